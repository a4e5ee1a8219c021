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
| `db_mtl` | log losses; shared gradients rescaled to the largest moving-average norm | a second backward pass over Trunk and Head 1 |
| `imtl` | IMTL-G: equal projections on both unit gradients (optional IMTL-L scales) | a second backward pass over Trunk and Head 1 |
| `stch` | smooth Tchebycheff of the log losses after a warm-up | a few ops on K numbers |
| `aligned_mtl` | shared gradients aligned to condition number 1 | a second backward pass, a 2x2 eigendecomposition |
| `fairgrad` | alpha-fair allocation of the shared update | a second backward pass over Trunk and Head 1 |
| `nash_mtl` | Nash bargaining weights, every `update_every` steps | a second backward pass on solving steps |
| `cagrad` | conflict-averse direction within `c` of the mean gradient | a second backward pass over Trunk and Head 1 |

`MultiTaskModel.set_weighting(weighting)` attaches one; `compile_model` does it
from `config.weighting`. The weighting's state is saved with `.keras` files and
weight checkpoints, never in exported SavedModels.

Each method is registered once, with its class, its config keys and whether
it allows `model.stop_gradient`, in `keras_mtl/config/weighting_methods.py`;
`make_weighting`, `METHODS` and the config's `[weighting]` keys follow from
that registration.
"""

from collections.abc import Mapping

from keras_mtl.config import weighting_methods
from keras_mtl.weighting.base import Weighting, task_losses
from keras_mtl.weighting.dwa import DWAWeighting
from keras_mtl.weighting.famo import FAMOWeighting
from keras_mtl.weighting.gradnorm import GradNormWeighting
from keras_mtl.weighting.pcgrad import PCGradWeighting
from keras_mtl.weighting.rlw import RLWWeighting
from keras_mtl.weighting.static import StaticWeighting
from keras_mtl.weighting.uncertainty import UncertaintyWeighting


class _RegisteredClasses(Mapping):
    """`weighting.method` -> class, for every method registered now."""

    def __getitem__(self, method):
        if method not in weighting_methods.names():
            raise KeyError(method)
        return weighting_methods.spec(method).load_class()

    def __iter__(self):
        return iter(weighting_methods.names())

    def __len__(self):
        return len(weighting_methods.names())


METHODS = _RegisteredClasses()


def make_weighting(config):
    """The weighting named by `config.weighting.method`, for `config`'s tasks.

    The method's registration (`keras_mtl.config.weighting_methods`) names
    its class and maps the `weighting.<method>_<parameter>` keys to the
    constructor's arguments.

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
    settings = config.weighting
    if settings.method not in METHODS:
        raise ValueError(
            f"Unknown weighting method. Expected one of {sorted(METHODS)}. "
            f"Received: weighting.method={settings.method!r}"
        )
    method = weighting_methods.spec(settings.method)
    arguments = method.constructor_arguments(settings)
    return method.load_class()(config.task_names, **arguments)


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
