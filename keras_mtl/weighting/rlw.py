"""`rlw`: Random Loss Weighting (Lin et al., TMLR 2022 / arXiv 2021).

Every training step draws fresh weights `w = softmax(lambda)`,
`lambda ~ N(0, I)` (the paper's normal-softmax variant; the weights sum to 1).
The draw is a stateless function of `(weighting.rlw_seed, step)`, where `step`
is the optimizer's iteration count: every replica draws the same weights, a
rerun with the same seed draws the same sequence, and a resumed run continues
it. Evaluation uses the weights' expectation, `1 / K` each. Cost per step: one
draw of K numbers.
"""

import tensorflow as tf
from keras import ops

from keras_mtl.weighting.base import Weighting


def rlw_weights(seed, step, num_tasks):
    """`softmax(lambda)` with `lambda ~ N(0, I)` drawn from `(seed, step)`.

    Example:

    >>> weights = rlw_weights(0, 7, 2)
    >>> float(ops.sum(weights))
    1.0
    """
    seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    return tf.nn.softmax(tf.random.stateless_normal([num_tasks], seed=seed))


class RLWWeighting(Weighting):
    """Random weights each step, reproducible from a seed.

    Args:
        task_names: The tasks in head order.
        seed: The seed of the weights' sequence.

    Example:

    ```python
    model.set_weighting(RLWWeighting(["coarse", "fine"], seed=0))
    ```
    """

    method = "rlw"

    def __init__(self, task_names, seed=0):
        super().__init__(task_names)
        self.seed = seed

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}

    def loss_weights(self, model, losses, training=True):
        count = len(self.task_names)
        if not training:
            return ops.full([count], 1.0 / count)
        step = ops.convert_to_tensor(model.optimizer.iterations)
        return rlw_weights(self.seed, step, count)
