"""Loss weighting: how the two task losses are combined while training.

| `weighting.method` | weights | extra cost per step |
|---|---|---|
| `static` (default) | the tasks' `weight`, as compiled `loss_weights` | none |
| `uncertainty` | `0.5 exp(-s_i)`, learned log-variances, bounded form | a few scalar ops |
| `dwa` | from the last two epochs' loss ratios | none (an epoch-end callback) |
| `rlw` | `softmax(N(0, I))`, drawn each step from a seed | one draw of K numbers |
| `gradnorm` | learned to balance gradient norms on Head 1's last layer | two partial backward passes (losses to that layer) |
| `pcgrad` | the tasks' `weight`; conflicting shared gradients projected | a second backward pass over Trunk and Head 1 |
| `famo` | FAMO's adaptive weights | a few ops on K numbers |

`MultiTaskModel.set_weighting(weighting)` attaches one; `compile_model` does it
from `config.weighting`. The weighting's state is saved with `.keras` files and
weight checkpoints, never in exported SavedModels.
"""

from keras_mtl.weighting.base import Weighting, task_losses
from keras_mtl.weighting.dwa import DWAWeighting
from keras_mtl.weighting.famo import FAMOWeighting
from keras_mtl.weighting.gradnorm import GradNormWeighting
from keras_mtl.weighting.pcgrad import PCGradWeighting
from keras_mtl.weighting.rlw import RLWWeighting
from keras_mtl.weighting.static import StaticWeighting
from keras_mtl.weighting.uncertainty import UncertaintyWeighting

METHODS = {
    cls.method: cls
    for cls in (
        StaticWeighting,
        UncertaintyWeighting,
        DWAWeighting,
        RLWWeighting,
        GradNormWeighting,
        PCGradWeighting,
        FAMOWeighting,
    )
}


def make_weighting(config):
    """The weighting named by `config.weighting.method`, for `config`'s tasks.

    Args:
        config: A `keras_mtl.Config`.

    Returns:
        An unbuilt `Weighting`; `MultiTaskModel.set_weighting` builds it.

    Example:

    ```python
    config = keras_mtl.load_config("shapes", ["weighting.method=famo"])
    model.set_weighting(make_weighting(config))
    ```
    """
    settings, names = config.weighting, config.task_names
    parameters = {
        "static": {},
        "uncertainty": {"learning_rate": settings.uncertainty_learning_rate},
        "dwa": {"temperature": settings.dwa_temperature},
        "rlw": {"seed": settings.rlw_seed},
        "gradnorm": {
            "alpha": settings.gradnorm_alpha,
            "learning_rate": settings.gradnorm_learning_rate,
        },
        "pcgrad": {},
        "famo": {
            "learning_rate": settings.famo_learning_rate,
            "gamma": settings.famo_gamma,
        },
    }
    if settings.method not in METHODS:
        raise ValueError(
            f"Unknown weighting method. Expected one of {sorted(METHODS)}. "
            f"Received: weighting.method={settings.method!r}"
        )
    return METHODS[settings.method](names, **parameters[settings.method])


def weighting_from_config(config):
    """Rebuilds a weighting from its `get_config()` dict (used by `.keras` loading)."""
    config = dict(config)
    method = config.pop("method", None)
    if method not in METHODS:
        raise ValueError(
            f"Unknown weighting method in a saved model's config. Expected one of "
            f"{sorted(METHODS)}. Received: method={method!r}"
        )
    return METHODS[method](**config)


__all__ = [
    "DWAWeighting",
    "FAMOWeighting",
    "GradNormWeighting",
    "METHODS",
    "PCGradWeighting",
    "RLWWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "Weighting",
    "make_weighting",
    "task_losses",
    "weighting_from_config",
]
