"""`cagrad`: conflict-averse gradient descent (Liu et al., NeurIPS 2021,
"Conflict-Averse Gradient Descent for Multi-task Learning").

CAGrad moves the shared parameters along the average gradient `g0`, bent
towards the task that would otherwise gain least: with
`phi = c^2 |g0|^2` and `g_w = sum_i w_i g_i`, `w` on the simplex minimising

    F(w) = g_w . g0 + sqrt(phi) |g_w|,

the update is `d = g0 + (sqrt(phi) / |g_w|) g_w`, which maximises the
smallest task decrease `min_i g_i . d` within the ball `|d - g0| <=
sqrt(phi)`. `c` is `weighting.cagrad_c` (0.4, the paper's NYUv2 setting;
0 gives back the sum of the gradients). `G` holds the gradients of the
`weight`-ed task losses on the shared parameters, the Trunk and Head 1 (both
losses reach them, Loss 2 through Head 2), summed over the replicas; Head 2
gets Loss 2's gradient as with `static` (see
`keras_mtl.weighting.gradient_combination`).

keras-mtl applies the authors' (and LibMTL's `rescale=1`) convention,
`d / (1 + c^2)`, and, as the authors' code does "to match the sum loss",
multiplies by the task count `K = 2`:

    update = K (g0 + sqrt(phi) / |g_w| g_w) / (1 + c^2)
           = (1 + K lam p) g1 + (1 + K lam (1 - p)) g2,  over (1 + c^2)

with `lam = sqrt(phi) / |g_w|`; `<task>_weight` logs these two coefficients.

The solver, inside the compiled step, exact and without iterations: with two
tasks `w = (p, 1 - p)` and `F` is convex in `p`, so its minimiser on [0, 1]
is the unconstrained one clipped. Writing `u = g1 - g2` and `g_w = g2 + p u`,
`F'(p) = g0 . u + sqrt(phi) |u| cos(u, g_w)` vanishes where the cosine
equals `kappa = -g0 . u / (sqrt(phi) |u|)`; with `h` the part of `g2`
orthogonal to `u`, that is where `g_w`'s component along `u` is
`kappa |h| / sqrt(1 - kappa^2)` (`|kappa| >= 1`: an end of [0, 1]).

Cost per step: two backward passes over the Trunk and Head 1 (one per task)
instead of one, an all-reduce of both tasks' shared gradients, their three
dot products and a few scalar operations.
"""

from keras import ops

from keras_mtl.weighting.gradient_combination import (
    GradientCombinationWeighting,
    gram_entries,
)

TASKS = 2


def cagrad_share(a, m, b, c):
    """The minimising `p` of `F` for the Gram entries `(a, m, b)` (float64)."""
    sqrt_phi = c * ops.sqrt(ops.maximum(a + 2.0 * m + b, 0.0) / 4.0)
    spread = ops.maximum(a - 2.0 * m + b, 0.0)  # |u|^2
    along = m - b  # u . g2
    # Where phi = 0 or g1 = g2, every p gives the same update.
    kappa = ops.clip(_divide(-(a - b) / 2.0, sqrt_phi * ops.sqrt(spread)), -1.0, 1.0)
    orthogonal = ops.sqrt(_divide(ops.maximum(a * b - m * m, 0.0), spread))
    component = kappa * orthogonal / ops.sqrt(ops.maximum(1.0 - kappa**2, 1e-30))
    share = _divide(component * ops.sqrt(spread) - along, spread)
    return ops.where(spread > 0, ops.clip(share, 0.0, 1.0), 0.5)


def _divide(numerator, denominator):
    safe = ops.where(denominator != 0, denominator, ops.ones_like(denominator))
    return ops.where(denominator != 0, numerator / safe, ops.zeros_like(numerator))


def cagrad_coefficients(gram, c):
    """CAGrad's update as `c1 g1 + c2 g2` (rescaled by `K / (1 + c^2)`).

    Args:
        gram: The 2x2 Gram matrix `G^T G` of the two task gradients.
        c: The conflict aversion `c >= 0`.

    Returns:
        `[c1, c2]` (float32).

    Example:

    >>> cagrad_coefficients(ops.array([[1.0, 0.0], [0.0, 1.0]]), 0.0)  # [1, 1]
    """
    a, m, b = gram_entries(gram)
    share = cagrad_share(a, m, b, c)
    sqrt_phi = c * ops.sqrt(ops.maximum(a + 2.0 * m + b, 0.0) / 4.0)
    combined = share**2 * a + 2.0 * share * (1.0 - share) * m + (1.0 - share) ** 2 * b
    lam = _divide(sqrt_phi, ops.sqrt(ops.maximum(combined, 0.0)))
    shares = ops.stack([share, 1.0 - share])
    coefficients = (1.0 + TASKS * lam * shares) / (1.0 + c**2)
    return ops.cast(coefficients, "float32")


class CAGradWeighting(GradientCombinationWeighting):
    """CAGrad on the Trunk and Head 1 (see the module docstring).

    Args:
        task_names: The tasks in head order.
        c: The conflict aversion `c` (0: the sum of the task gradients).

    Example:

    ```python
    model.set_weighting(CAGradWeighting(["coarse", "fine"], c=0.4))
    ```
    """

    method = "cagrad"

    def __init__(self, task_names, c=0.4):
        super().__init__(task_names)
        self.c = c

    def get_config(self):
        return {**super().get_config(), "c": self.c}

    def coefficients(self, gram):
        coefficients = cagrad_coefficients(gram, self.c)
        return coefficients, coefficients
