"""How Head 2 reads Head 1 (`model.head2_input`), and the per-task inputs.

| `head2_input` | Head 2 reads | task 2's output |
|---|---|---|
| `features` | Head 1's hidden features (+ task 2's representation of a gated trunk) | Head 2's prediction |
| `features+prediction` | the same and Head 1's prediction | Head 2's prediction |
| `esmm` | task 2's representation | p(task 1) x Head 2's p(task 2 given task 1) (`keras_mtl.models.esmm`) |
| `aitm` | task 2's representation, and Head 1's features through attention (`keras_mtl.models.aitm`) | Head 2's prediction |

A gated-expert trunk (`mmoe`, `ple`) yields one representation per task:
Head 1 reads task 1's, Head 2 task 2's. The other trunks yield one, which
both tasks share. In every case Loss 1 reads Head 1's prediction alone, so
its gradient never reaches Head 2.
"""

from keras_mtl.models.esmm import link_esmm


def task_representations(trunk_output):
    """`(task 1's, task 2's)` representation from the Trunk's output."""
    if isinstance(trunk_output, list | tuple):
        return tuple(trunk_output)
    return trunk_output, trunk_output


def link_heads(config, trunk_output, head1, head2):
    """Calls the heads on the Trunk's output as `model.head2_input` says.

    Args:
        config: A `keras_mtl.Config`.
        trunk_output: The Trunk's output (one tensor, or one per task).
        head1: Head 1, a `TaskHead`.
        head2: Head 2, a `TaskHead` (an `AITMHead` for `aitm`).

    Returns:
        `(prediction 1, output 2)`: the two task outputs.
    """
    task1, task2 = config.tasks
    link = config.model.head2_input
    first, second = task_representations(trunk_output)
    gated = isinstance(trunk_output, list | tuple)
    features1, prediction1 = head1(first)
    if link == "esmm":
        _, conditional = head2(second)
        return prediction1, link_esmm(task1, task2, prediction1, conditional)
    if link == "aitm":
        return prediction1, head2([second, features1, prediction1])[1]
    inputs = [second, features1] if gated else [features1]
    if link == "features+prediction":
        inputs.append(prediction1)
    _, prediction2 = head2(inputs if len(inputs) > 1 else inputs[0])
    return prediction1, prediction2
