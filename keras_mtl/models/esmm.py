"""The ESMM link: Head 2's output is p(task 1) x p(task 2 | task 1).

Entire Space Multi-task Model (Ma et al., SIGIR 2018). On a click ->
conversion funnel Head 1 predicts the click (pCTR) and Head 2 the conversion
given a click (pCVR); the model's task-2 output is their product, pCTCVR =
p(click and conversion), trained with the conversion label on every
impression (0 where there was no click). pCVR is thus learnt over the entire
space of impressions, not over clicked rows alone, which removes the sample
selection bias of a model trained on clicks only.

The model's outputs stay the two tasks' (`{task1: pCTR, task2: pCTCVR}`);
`serving_model` adds pCVR as a third named output,
`<task2>_given_<task1>`, for the export.
"""

import keras
from keras import ops

from keras_mtl.models.multi_task_model import MultiTaskModel

LAYER_NAME = "esmm"


@keras.saving.register_keras_serializable(package="keras_mtl")
class EntireSpaceProduct(keras.layers.Layer):
    """`p1 * p2_given_1`, in float32: the probability of both events.

    Args:
        conditional_name: The export's name of the conditional probability
            (`<task2>_given_<task1>`).
        **kwargs: `keras.layers.Layer` arguments (`name`).

    Example:

    >>> product = EntireSpaceProduct("conversion_given_click")
    >>> product([keras.ops.full((2, 1), 0.5), keras.ops.full((2, 1), 0.2)])
    ... # [[0.1], [0.1]]
    """

    def __init__(self, conditional_name="", **kwargs):
        super().__init__(**kwargs)
        self.conditional_name = conditional_name

    def call(self, inputs):
        first, conditional = inputs
        return ops.cast(first, "float32") * ops.cast(conditional, "float32")

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "conditional_name": self.conditional_name}


def conditional_output_name(task1, task2):
    """`<task2>_given_<task1>`: the export's name of p(task 2 | task 1)."""
    return f"{task2}_given_{task1}"


def link_esmm(task1, task2, head1_prediction, conditional):
    """p(task 1) x p(task 2 | task 1), from the two heads' predictions."""
    name = conditional_output_name(task1.name, task2.name)
    return EntireSpaceProduct(name, name=LAYER_NAME)([head1_prediction, conditional])


def serving_model(model):
    """`model`, plus the named conditional output of an ESMM link.

    A model without an `esmm` layer is returned as it is. For one with it,
    a functional model over the same layers and weights whose outputs are
    the task outputs and `<task2>_given_<task1>` (Head 2's prediction):
    the SavedModel and the server return all three.

    Args:
        model: A model from `build_model` (or loaded from a `.keras` file).

    Returns:
        A `keras.Model` with dict outputs (a `MultiTaskModel`, so that a call
        without `training` runs in inference mode).
    """
    try:
        product = model.get_layer(LAYER_NAME)
    except ValueError:
        return model
    if not isinstance(product, EntireSpaceProduct):
        return model
    _, conditional = model.get_layer("head2").output
    outputs = {**model.output, product.conditional_name: conditional}
    return MultiTaskModel(model.inputs, outputs, name=model.name)
