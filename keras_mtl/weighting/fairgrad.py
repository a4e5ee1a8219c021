"""`fairgrad`: alpha-fair allocation of the update (Ban and Ji, ICML 2024,
"Fair Resource Allocation in Multi-Task Learning").

FairGrad treats the update `d` of the shared parameters as a resource that
the tasks share, task i's utility being its first-order loss decrease
`g_i . d`, and picks the alpha-fair allocation: `d = G w` with positive
weights solving

    G^T G w = w^(-1 / alpha)        (elementwise)

`alpha = 1` is proportional fairness (Nash-MTL's bargaining solution),
`alpha -> infinity` max-min fairness (`weighting.fairgrad_alpha`, default
2.0). `G` holds the gradients of the
`weight`-ed task losses on the shared parameters, the Trunk and Head 1 (both
losses reach them, Loss 2 through Head 2), summed over the replicas; Head 2
gets Loss 2's gradient as with `static` (see
`keras_mtl.weighting.gradient_combination`). The update's global norm is
clipped to `weighting.fairgrad_max_norm` (1.0, as the authors' code does;
0 turns it off): for `alpha > 1` `|d|` grows without bound as the gradients
shrink or approach opposite directions. The authors' code also multiplies `d`
by the task count before clipping; keras-mtl keeps the paper's `d = G w`.

The solver, inside the compiled step with a fixed cost: with two tasks the
system reduces to one equation in the log-ratio `rho = log(w2 / w1)`,

    H(rho) = rho / alpha + log(b r + m) - log(a + m r) = 0,   r = e^rho,

(`[[a, m], [m, b]] = G^T G`), where `H` is increasing (`H' >= 1 / alpha`,
by Cauchy-Schwarz) and runs from -inf to +inf over the ratios that keep both
weights positive: exactly one root. Six rounds of a 64-point grid search on
the bracket `|rho| <= 40` narrow it to `80 / 64^6 = 1.2e-9`, below float32
precision, and `w_i` follow in closed form. A task without gradient gets
weight 0; exactly opposed gradients, which have no solution, give `w = 0`
(no shared update, as PCGrad's projection gives).

Cost per step: two backward passes over the Trunk and Head 1 (one per task)
instead of one, an all-reduce of both tasks' shared gradients, their three
dot products and a few hundred float64 scalar operations.
"""

from keras import ops

from keras_mtl.weighting.gradient_combination import (
    GradientCombinationWeighting,
    gram_entries,
    opposed,
)

LOG_RATIO_BOUND = 40.0
GRID_POINTS = 64
ROUNDS = 6
_FLOOR = 1e-300


def _safe_log(value):
    return ops.log(ops.maximum(value, _FLOOR))


def _log_ratio(a, m, b, alpha):
    """The root of `H` (see the module docstring) on the normalised entries."""
    bound = ops.convert_to_tensor(LOG_RATIO_BOUND, "float64")
    low, high = -bound, bound
    conflict = m < 0  # The weights stay positive for |m| / b < r < a / |m|.
    low = ops.where(conflict, ops.maximum(low, _safe_log(-m / b)), low)
    high = ops.where(conflict, ops.minimum(high, _safe_log(a / -m)), high)
    fractions = ops.linspace(0.0, 1.0, GRID_POINTS, dtype="float64")
    for _ in range(ROUNDS):
        grid = low + (high - low) * fractions
        ratio = ops.exp(grid)
        h = grid / alpha + _safe_log(b * ratio + m) - _safe_log(a + m * ratio)
        below = ops.sum(ops.cast(h < 0, "int32"))
        low = ops.take(grid, ops.maximum(below - 1, 0))
        high = ops.take(grid, ops.minimum(below, GRID_POINTS - 1))
    return (low + high) / 2


def fairgrad_weights(gram, alpha):
    """FairGrad's weights: the positive `w` with `G^T G w = w^(-1/alpha)`.

    Args:
        gram: The 2x2 Gram matrix `G^T G` of the two task gradients.
        alpha: The fairness `alpha > 0`.

    Returns:
        The weights `[w1, w2]` (float32).

    Example:

    >>> fairgrad_weights(ops.array([[1.0, 0.0], [0.0, 4.0]]), 1.0)  # [1, 0.5]
    """
    a, m, b = gram_entries(gram)
    total = a + b
    total = ops.where(total > 0, total, ops.ones_like(total))
    a, m, b = a / total, m / total, b / total  # the same root, weights rescaled
    ratio = ops.exp(_log_ratio(a, m, b, alpha))
    power = -alpha / (alpha + 1.0)
    # Each task's own equation, (G^T G w)_i = w_i^(-1/alpha), given the ratio.
    weights = ops.stack(
        [
            ops.maximum(a + m * ratio, _FLOOR) ** power,
            ops.maximum(b + m / ratio, _FLOOR) ** power,
        ]
    ) * (total**power)
    keep = ops.stack([a > 0, b > 0]) & ~opposed(a, m, b)
    return ops.cast(ops.where(keep, weights, ops.zeros_like(weights)), "float32")


class FairGradWeighting(GradientCombinationWeighting):
    """FairGrad on the Trunk and Head 1 (see the module docstring).

    Args:
        task_names: The tasks in head order.
        alpha: The fairness `alpha` (1: proportional fairness, as Nash-MTL).
        max_norm: Clip the global norm of the shared update to this (0: off).

    Example:

    ```python
    model.set_weighting(FairGradWeighting(["coarse", "fine"], alpha=2.0))
    ```
    """

    method = "fairgrad"

    def __init__(self, task_names, alpha=2.0, max_norm=1.0):
        super().__init__(task_names, max_norm=max_norm)
        self.alpha = alpha

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "max_norm": self.max_norm}

    def coefficients(self, gram):
        weights = fairgrad_weights(gram, self.alpha)
        return weights, weights
