"""The MMoE paper's synthetic regression pair (Ma et al., KDD 2018, 4.2).

Two tasks from shared weights whose cosine similarity is the chosen
correlation p:

1. u1, u2: orthogonal unit vectors in R^d;
2. w1 = c u1, w2 = c (p u1 + sqrt(1 - p^2) u2);
3. x ~ N(0, I_d);
4. y_i = w_i^T x + sum_{k=1}^m sin(alpha_k w_i^T x + beta_k) + eps_i,
   eps_i ~ N(0, 0.01).

The weights (u1, u2, alpha, beta) depend on `seed` alone, so a dataset's
splits share them; x and the noise depend on the seed and the split.
The paper uses d = 100, m = 10, c = 1.
"""

import numpy as np

DIMENSION = 100
SINES = 10
SCALE = 1.0
NOISE_STD = 0.1  # variance 0.01


def task_weights(correlation, seed, dimension=DIMENSION, scale=SCALE):
    """`(w1, w2)`: two `(dimension,)` vectors with cosine `correlation`."""
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(
            f"Expected a correlation in [-1, 1]. Received: correlation={correlation}"
        )
    rng = np.random.default_rng([seed, 0])
    # Gram-Schmidt on two Gaussian vectors gives orthogonal unit vectors.
    basis, _ = np.linalg.qr(rng.normal(size=(dimension, 2)))
    u1, u2 = basis[:, 0], basis[:, 1]
    w1 = scale * u1
    w2 = scale * (correlation * u1 + np.sqrt(1.0 - correlation**2) * u2)
    return w1, w2


def sine_parameters(seed, sines=SINES):
    """`(alpha, beta)`, each `(sines,)`, drawn from N(0, 1)."""
    rng = np.random.default_rng([seed, 1])
    return rng.normal(size=sines), rng.normal(size=sines)


def generate(correlation, count, seed, split_index, dimension=DIMENSION):
    """`count` rows of the split `split_index` (0 train, 1 test).

    Returns:
        `(x, y1, y2)`: float32 arrays of shapes `(count, dimension)`,
        `(count,)` and `(count,)`.
    """
    w1, w2 = task_weights(correlation, seed, dimension)
    alpha, beta = sine_parameters(seed)
    rng = np.random.default_rng([seed, 2, split_index])
    x = rng.normal(size=(count, dimension))
    targets = []
    for w in (w1, w2):
        projection = x @ w
        sines = np.sin(projection[:, None] * alpha + beta).sum(axis=1)
        targets.append(projection + sines + rng.normal(0.0, NOISE_STD, count))
    return x.astype("float32"), *(t.astype("float32") for t in targets)
