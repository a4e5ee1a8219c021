"""A click -> conversion funnel with known p(conversion | click) per row.

Each impression has standard-normal `features` x. Two directions of them,
a (click propensity, s = a^T x) and b (purchase intent, t = b^T x, b
orthogonal to a), set the true probabilities:

    p(click | x)              = sigmoid(-2 + 1.5 s)          (~18 % click)
    p(conversion | click, x)  = sigmoid(-0.5 + 1.2 t - 1.2 tanh(s))

so curious clickers (large s) convert less: the clicked rows are a biased
sample of the impressions (sample selection bias), and few (data
sparsity). A conversion is only observed after a click: `conversion` is
`click * conversion_if_clicked`, where `conversion_if_clicked` is drawn for
every row, the counterfactual outcome that evaluation compares pCVR with
over all impressions. The true probabilities are kept for evaluation too;
none of these is a model input.
"""

import numpy as np

DIMENSION = 12


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def directions(seed, dimension=DIMENSION):
    """`(a, b)`: orthogonal unit vectors, click propensity and intent."""
    rng = np.random.default_rng([seed, 0])
    basis, _ = np.linalg.qr(rng.normal(size=(dimension, 2)))
    return basis[:, 0], basis[:, 1]


def true_probabilities(x, seed):
    """`(p(click | x), p(conversion | click, x))` for rows `x`."""
    a, b = directions(seed, x.shape[1])
    s, t = x @ a, x @ b
    return _sigmoid(-2.0 + 1.5 * s), _sigmoid(-0.5 + 1.2 * t - 1.2 * np.tanh(s))


def generate(count, seed, split_index, dimension=DIMENSION):
    """`count` impressions of the split `split_index` (0 train, 1 test).

    Returns:
        A dict of arrays: `features` `(count, dimension)` float32; `click`,
        `conversion`, `conversion_if_clicked` int64 (0/1);
        `conversion_given_click_label` (the conversion where clicked, -1
        elsewhere: the label of a model trained on clicked rows only);
        `true_ctr`, `true_cvr` float32.
    """
    rng = np.random.default_rng([seed, 1, split_index])
    x = rng.normal(size=(count, dimension))
    ctr, cvr = true_probabilities(x, seed)
    click = (rng.random(count) < ctr).astype("int64")
    conversion_if_clicked = (rng.random(count) < cvr).astype("int64")
    conversion = click * conversion_if_clicked
    return {
        "features": x.astype("float32"),
        "click": click,
        "conversion": conversion,
        "conversion_if_clicked": conversion_if_clicked,
        "conversion_given_click_label": np.where(click == 1, conversion, -1),
        "true_ctr": ctr.astype("float32"),
        "true_cvr": cvr.astype("float32"),
    }
