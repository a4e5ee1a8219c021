"""`PLETrunk`: Progressive Layered Extraction (Tang et al., RecSys 2020).

Each extraction level holds shared experts and, per task, task-specific
experts. Task t's gate mixes its own experts and the shared ones into task
t's output of the level; below the last level a shared gate mixes every
expert into the shared output, which the next level's shared experts read.
One level is the paper's Customized Gate Control (CGC). The last level's
task outputs are the trunk's per-task representations.
"""

import keras

from keras_mtl.models.experts import flat, flat_shape, make_experts, make_gate, mix
from keras_mtl.models.trunk import build_in_sequence


@keras.saving.register_keras_serializable(package="keras_mtl")
class PLETrunk(keras.layers.Layer):
    """`levels` extraction levels of shared and task-specific experts.

    Called on a batch it returns a list of `tasks` representations, task 1's
    first, each `(batch, expert_units)`.

    Args:
        levels: Extraction levels (1 is CGC).
        shared_experts: Shared experts per level.
        task_experts: Task-specific experts per task and level.
        expert_units: Width of each expert's layers.
        depth: Layers per expert.
        dropout: Dropout rate inside the experts (0 disables it).
        tasks: Number of tasks.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:

    >>> trunk = PLETrunk(levels=2, shared_experts=2, task_experts=1, name="trunk")
    >>> [r.shape for r in trunk(keras.ops.ones((4, 10)))]
    [(4, 16), (4, 16)]
    """

    def __init__(
        self,
        levels=2,
        shared_experts=2,
        task_experts=1,
        expert_units=16,
        depth=1,
        dropout=0.0,
        tasks=2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.levels = levels
        self.shared_experts = shared_experts
        self.task_experts = task_experts
        self.expert_units = expert_units
        self.depth = depth
        self.dropout = dropout
        self.tasks = tasks
        self.level_layers = [self._make_level(level) for level in range(levels)]

    def _make_level(self, level):
        policy, units = self.dtype_policy, self.expert_units
        args = (units, self.depth, self.dropout, policy)
        shared = make_experts(self.shared_experts, *args, f"l{level}_shared")
        own = [
            make_experts(self.task_experts, *args, f"l{level}_task{t}")
            for t in range(self.tasks)
        ]
        mixed = self.task_experts + self.shared_experts
        gates = [
            make_gate(mixed, policy, f"l{level}_gate{t}") for t in range(self.tasks)
        ]
        shared_gate = None
        if level < self.levels - 1:
            everything = self.tasks * self.task_experts + self.shared_experts
            shared_gate = make_gate(everything, policy, f"l{level}_shared_gate")
        return {
            "shared": shared,
            "own": own,
            "gates": gates,
            "shared_gate": shared_gate,
        }

    def build(self, input_shape):
        shape = flat_shape(input_shape)
        for level in self.level_layers:
            layers = [*level["shared"], *sum(level["own"], []), *level["gates"]]
            if level["shared_gate"] is not None:
                layers.append(level["shared_gate"])
            for layer in layers:
                build_in_sequence([layer], shape)
            shape = (shape[0], self.expert_units)

    def _levels(self, inputs, training):
        """Yields each level's `(task outputs, shared output, gate weights)`."""
        x = flat(inputs)
        task_inputs, shared_input = [x] * self.tasks, x
        for level in self.level_layers:
            shared = [e(shared_input, training=training) for e in level["shared"]]
            own = [
                [e(task_inputs[t], training=training) for e in level["own"][t]]
                for t in range(self.tasks)
            ]
            weights = [gate(task_inputs[t]) for t, gate in enumerate(level["gates"])]
            outputs = [mix(weights[t], own[t] + shared) for t in range(self.tasks)]
            if level["shared_gate"] is not None:
                weights.append(level["shared_gate"](shared_input))
                shared_input = mix(weights[-1], sum(own, []) + shared)
            task_inputs = outputs
            yield outputs, weights

    def gate_weights(self, inputs):
        """Every gate's weights, level by level (task gates, then the shared
        gate below the last level), each `(batch, experts mixed)`."""
        return [w for _, weights in self._levels(inputs, False) for w in weights]

    def call(self, inputs, training=None):
        *_, (outputs, _) = self._levels(inputs, training)
        return outputs

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], self.expert_units)] * self.tasks

    def get_config(self):
        return {
            **super().get_config(),
            "levels": self.levels,
            "shared_experts": self.shared_experts,
            "task_experts": self.task_experts,
            "expert_units": self.expert_units,
            "depth": self.depth,
            "dropout": self.dropout,
            "tasks": self.tasks,
        }
