"""`nash_mtl`: multi-task learning as a bargaining game (Navon et al., ICML
2022, "Multi-Task Learning as a Bargaining Game").

Nash-MTL updates the shared parameters along the Nash bargaining solution
`d = G alpha`, with positive weights solving

    G^T G alpha = 1 / alpha        (elementwise)

so that each task's share of the decrease, `alpha_i g_i . d = 1`, is equal
and `|d|^2 = K`. `G` holds the gradients of the `weight`-ed task losses on
the shared parameters, the Trunk and Head 1 (both losses reach them, Loss 2
through Head 2), summed over the replicas; Head 2 gets Loss 2's gradient as
with `static` (see `keras_mtl.weighting.gradient_combination`). The weights
do not depend on the tasks' `weight`s (scaling `g_i` scales `alpha_i` back).

The paper solves the system with a sequence of convex problems (cvxpy). With
two tasks it has a closed form, computed inside the compiled step (no
iterations, exact): with `n_i = |g_i|` and `cos` the cosine of the gradients,

    alpha_i = 1 / (n_i sqrt(1 + cos)),   d = (g1 / n1 + g2 / n2) / sqrt(1 + cos)

(FairGrad with `alpha = 1`). A task without gradient gets weight 0 and the
other `1 / n_i`; exactly opposed gradients, which have no solution, give
`alpha = 0` (no shared update, as PCGrad's projection gives). The authors'
code solves with `G^T G` divided by its Frobenius norm and uses that
solution as it is, which multiplies `d` by `|G^T G|_F^(1/2)`; keras-mtl keeps
the paper's `alpha`.

As in the paper, the weights are recomputed only every
`weighting.nash_mtl_update_every` steps (default 1). On the steps in
between the last weights are reused and the step takes one backward pass of
`sum_i alpha_i L_i` instead of one per task, which is what makes the setting
cheap. The update's global norm is clipped to `weighting.nash_mtl_max_norm`
(1.0, the authors' default; 0 turns it off): `|d| = sqrt(2)` on the solving
steps. `alpha` and the steps since the last solve are the method's state,
saved with `.keras` files and backups.

Cost per solving step: two backward passes over the Trunk and Head 1 instead
of one, an all-reduce of both tasks' shared gradients and their three dot
products; per reusing step: one backward pass (and, on several replicas, that
same all-reduce, for the norm of the clipped update).
"""

import tensorflow as tf
from keras import ops

from keras_mtl.weighting.base import state_variable
from keras_mtl.weighting.gradient_combination import (
    GradientCombinationWeighting,
    gram_entries,
    opposed,
)


def nash_weights(gram):
    """The Nash bargaining weights: the positive `alpha` with
    `G^T G alpha = 1 / alpha`, for two tasks.

    Args:
        gram: The 2x2 Gram matrix `G^T G` of the two task gradients.

    Returns:
        The weights `[alpha1, alpha2]` (float32).

    Example:

    >>> nash_weights(ops.array([[1.0, 0.0], [0.0, 4.0]]))  # [1, 0.5]
    """
    a, m, b = gram_entries(gram)
    norm1, norm2 = ops.sqrt(a), ops.sqrt(b)
    both = (a > 0) & (b > 0) & ~opposed(a, m, b)
    agreement = ops.where(both, norm1 * norm2 + m, ops.ones_like(m))  # n1 n2 (1+cos)
    safe1 = ops.where(a > 0, norm1, ops.ones_like(a))
    safe2 = ops.where(b > 0, norm2, ops.ones_like(b))
    paired = ops.stack(
        [ops.sqrt(safe2 / (safe1 * agreement)), ops.sqrt(safe1 / (safe2 * agreement))]
    )
    alone = ops.stack([1.0 / safe1, 1.0 / safe2])  # a_i alpha_i = 1 / alpha_i
    zero = ops.zeros_like(alone)
    solo = ops.stack([a > 0, b > 0]) & ~ops.stack([b > 0, a > 0])
    weights = ops.where(both, paired, ops.where(solo, alone, zero))
    return ops.cast(weights, "float32")


class NashMTLWeighting(GradientCombinationWeighting):
    """Nash-MTL on the Trunk and Head 1 (see the module docstring).

    Args:
        task_names: The tasks in head order.
        update_every: Recompute the weights every this many steps.
        max_norm: Clip the global norm of the shared update to this (0: off).

    Example:

    ```python
    model.set_weighting(NashMTLWeighting(["coarse", "fine"], update_every=10))
    ```
    """

    method = "nash_mtl"

    def __init__(self, task_names, update_every=1, max_norm=1.0):
        super().__init__(task_names, max_norm=max_norm)
        self.update_every = update_every

    def build_state(self, model):
        self.alpha = state_variable([1.0, 1.0], "nash_mtl_alpha")
        self.steps_since_solve = state_variable(0.0, "nash_mtl_steps_since_solve")

    def state_variables(self):
        return [self.alpha, self.steps_since_solve]

    def get_config(self):
        return {
            **super().get_config(),
            "update_every": self.update_every,
            "max_norm": self.max_norm,
        }

    def _solving(self):
        return self.update_every == 1 or self.steps_since_solve < 0.5

    def directions(self, tape, targets, shared):
        if self.update_every == 1:
            return super().directions(tape, targets, shared)
        zero = tf.UnconnectedGradients.ZERO
        solving = self._solving()
        # One backward pass outside any branch (a gradient inside a tf.cond
        # branch ran slower here): Loss 1's gradient when solving, else that
        # of sum_i alpha_i (lambda_i L_i), the whole update.
        factors = ops.where(solving, ops.convert_to_tensor([1.0, 0.0]), self.alpha)
        first = tape.gradient(
            targets,
            shared,
            output_gradients=[factors[0], factors[1]],
            unconnected_gradients=zero,
        )
        # Loss 2's only when solving. No synchronisation in either branch:
        # the all-reduce comes after.
        second = tf.cond(
            solving,
            lambda: tape.gradient(targets[1], shared, unconnected_gradients=zero),
            lambda: [ops.zeros_like(g) for g in first],
        )
        return first, second

    def coefficients(self, gram):
        solved = nash_weights(gram)
        if self.update_every == 1:
            return solved, solved
        solving = self._solving()
        # Reusing: the first direction already is the alpha-weighted gradient.
        reused = ops.convert_to_tensor([1.0, 0.0])
        coefficients = ops.where(solving, solved, reused)
        return coefficients, ops.where(solving, solved, self.alpha)

    def finish_step(self, weights):
        # A step that overflowed under mixed precision is skipped by the
        # LossScaleOptimizer; its weights are not kept either.
        finite = ops.all(ops.isfinite(weights))
        self.alpha.assign(ops.where(finite, weights, self.alpha))
        self.steps_since_solve.assign(
            ops.mod(self.steps_since_solve + 1.0, float(self.update_every))
        )
