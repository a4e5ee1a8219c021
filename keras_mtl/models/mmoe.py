"""`MMoETrunk`: Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).

Shared experts, and one softmax gate per task that mixes them into that
task's representation: `f_t(x) = sum_k g_t(x)_k e_k(x)`, with
`g_t(x) = softmax(W_t x)`. Tasks that disagree can use different experts, so
the advantage over one shared bottom (`MLPTrunk`) grows as the tasks'
correlation falls (the paper's Figure 4).
"""

import keras

from keras_mtl.models.experts import flat, flat_shape, make_experts, make_gate, mix
from keras_mtl.models.trunk import build_in_sequence


@keras.saving.register_keras_serializable(package="keras_mtl")
class MMoETrunk(keras.layers.Layer):
    """`experts` MLP experts mixed by one softmax gate per task.

    Called on a batch it returns a list of `tasks` representations, task 1's
    first, each `(batch, expert_units)`.

    Args:
        experts: Number of shared experts.
        expert_units: Width of each expert's layers.
        depth: Layers per expert.
        dropout: Dropout rate inside the experts (0 disables it).
        tasks: Number of gates, one per task (1 gives a plain mixture of
            experts, the single-task baseline's trunk).
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:

    >>> trunk = MMoETrunk(experts=3, expert_units=8, name="trunk")
    >>> [r.shape for r in trunk(keras.ops.ones((4, 10)))]
    [(4, 8), (4, 8)]
    """

    def __init__(
        self, experts=4, expert_units=16, depth=1, dropout=0.0, tasks=2, **kwargs
    ):
        super().__init__(**kwargs)
        self.experts = experts
        self.expert_units = expert_units
        self.depth = depth
        self.dropout = dropout
        self.tasks = tasks
        self.expert_layers = make_experts(
            experts, expert_units, depth, dropout, self.dtype_policy, "expert"
        )
        self.gates = [
            make_gate(experts, self.dtype_policy, f"gate_{t}") for t in range(tasks)
        ]

    def build(self, input_shape):
        input_shape = flat_shape(input_shape)
        for layer in [*self.expert_layers, *self.gates]:
            build_in_sequence([layer], input_shape)

    def gate_weights(self, inputs):
        """Each task's gate weights, `(batch, experts)`, rows summing to 1."""
        x = flat(inputs)
        return [gate(x) for gate in self.gates]

    def call(self, inputs, training=None):
        x = flat(inputs)
        outputs = [expert(x, training=training) for expert in self.expert_layers]
        return [mix(gate(x), outputs) for gate in self.gates]

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], self.expert_units)] * self.tasks

    def get_config(self):
        return {
            **super().get_config(),
            "experts": self.experts,
            "expert_units": self.expert_units,
            "depth": self.depth,
            "dropout": self.dropout,
            "tasks": self.tasks,
        }
