"""The registry of loss-weighting methods: one `register` call per method.

A registration names the method (the `weighting.method` value), the class that
implements it as a `"module:Class"` string, its constructor's parameters with
their defaults and constraints, and whether it can train a model whose Head 2
stops the gradient (`model.stop_gradient = true`). Everything else follows
from it: `WeightingConfig` gets one field `<method>_<parameter>` per
parameter, validation checks the constraints and refuses `stop_gradient` for
the methods that need Loss 2's gradient in Head 1 and the Trunk, and
`keras_mtl.weighting.make_weighting` passes the fields to the constructor.

The registry lives in the config package, not in `keras_mtl/weighting/`,
because it describes config keys and must not import TensorFlow: `keras-mtl
config` reads and checks a config without it, while importing anything under
`keras_mtl.weighting` runs that package's `__init__`, which imports the method
classes and with them Keras. The classes are imported only when one is built.

Adding a method is one new file, `keras_mtl/weighting/<name>.py`, with a
`Weighting` subclass whose `method` is `<name>`, plus one `register` call at
the end of this file.

Example:

```python
register(
    "famo",
    "keras_mtl.weighting.famo:FAMOWeighting",
    parameters=[
        Parameter("learning_rate", 0.025, greater_than(0)),
        Parameter("gamma", 0.01, at_least(0.0)),
    ],
)
```
"""

import dataclasses
import importlib
import math
from collections.abc import Callable

_REGISTRY = {}
_LISTENERS = []


@dataclasses.dataclass(frozen=True)
class Constraint:
    """A condition on a parameter's value and how errors describe it.

    Args:
        expected: What a valid value is, as an error says it after "must be"
            (`"a number > 0"`).
        check: Returns whether a value is valid.
    """

    expected: str
    check: Callable[[object], bool]


def greater_than(bound):
    """A finite number above `bound`."""
    return Constraint(
        f"a number > {bound}", lambda value: value > bound and math.isfinite(value)
    )


def at_least(bound):
    """A finite number at or above `bound`."""
    return Constraint(
        f">= {bound}", lambda value: value >= bound and math.isfinite(value)
    )


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One constructor argument of a method, set by `weighting.<method>_<name>`.

    Args:
        name: The constructor's keyword argument (`"learning_rate"`).
        default: Its default; its type (bool, int, float or str) is the type
            the config key must have.
        constraint: A `Constraint` on the value, or None.
    """

    name: str
    default: bool | int | float | str
    constraint: Constraint | None = None


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """A registered method (see `register`)."""

    name: str
    class_path: str
    parameters: tuple[Parameter, ...] = ()
    allows_stop_gradient: bool = True

    def config_key(self, parameter):
        """The `[weighting]` key of `parameter`: `<method>_<parameter>`."""
        return f"{self.name}_{parameter.name}"

    def config_keys(self):
        """The `[weighting]` keys of all parameters, in order."""
        return [self.config_key(parameter) for parameter in self.parameters]

    def load_class(self):
        """Imports and returns the class that implements the method."""
        module, _, name = self.class_path.partition(":")
        return getattr(importlib.import_module(module), name)

    def constructor_arguments(self, weighting_config):
        """The keyword arguments for the class from a `WeightingConfig`."""
        return {
            parameter.name: getattr(weighting_config, self.config_key(parameter))
            for parameter in self.parameters
        }


def register(name, class_path, parameters=(), *, allows_stop_gradient=True):
    """Registers a weighting method under `weighting.method = name`.

    Args:
        name: The method's name, a Python identifier; the class's `method`.
        class_path: Where the class lives, `"module:Class"`, imported on use.
        parameters: The constructor's arguments after `task_names`, as
            `Parameter`s; each one becomes the config key
            `weighting.<name>_<parameter>`.
        allows_stop_gradient: False for methods that need Loss 2's gradient
            in Head 1 and the Trunk, which `model.stop_gradient = true` cuts.

    Returns:
        The `MethodSpec`.
    """
    module, colon, class_name = class_path.partition(":")
    if not name.isidentifier() or not (module and colon and class_name):
        raise ValueError(
            "Expected a method name that is a Python identifier and a class path "
            f"'module:Class'. Received: name={name!r}, class_path={class_path!r}"
        )
    if name in _REGISTRY:
        raise ValueError(f"Weighting method {name!r} is already registered.")
    registration = MethodSpec(name, class_path, tuple(parameters), allows_stop_gradient)
    taken = {"method", "diagnostics"}
    taken.update(key for item in specs() for key in item.config_keys())
    for parameter, key in zip(parameters, registration.config_keys(), strict=True):
        if type(parameter.default) not in (bool, int, float, str):
            raise ValueError(
                f"Expected a bool, int, float or str default for `weighting.{key}`. "
                f"Received: default={parameter.default!r}"
            )
        if key in taken:
            raise ValueError(f"The config key `weighting.{key}` is already taken.")
        taken.add(key)
    _REGISTRY[name] = registration
    _changed()
    return registration


def unregister(name):
    """Removes a registered method (tests register throwaway ones)."""
    del _REGISTRY[spec(name).name]
    _changed()


def spec(name):
    """The `MethodSpec` registered under `name`."""
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown weighting method. Expected one of {list(_REGISTRY)}. "
            f"Received: weighting.method={name!r}"
        )
    return _REGISTRY[name]


def names():
    """The registered methods' names, in registration order."""
    return tuple(_REGISTRY)


def specs():
    """The registered `MethodSpec`s, in registration order."""
    return tuple(_REGISTRY.values())


def check_stop_gradient(method, stop_gradient, source):
    """Refuses a method that needs the gradient Head 2's `stop_gradient` cuts.

    Args:
        method: A registered method's name.
        stop_gradient: Whether Head 2 stops the gradient into its inputs.
        source: Where the setting came from (a config file, a model), for the
            error message.

    Raises:
        ValueError: naming `weighting.method`, the methods refused and why.
    """
    if not stop_gradient or spec(method).allows_stop_gradient:
        return
    refused = [repr(item.name) for item in specs() if not item.allows_stop_gradient]
    if len(refused) > 1:
        refused = [", ".join(refused[:-1]), refused[-1]]
    raise ValueError(
        f"{source}: `weighting.method` must be a method other than "
        f"{' or '.join(refused)} "
        "with model.stop_gradient=true (they compare both losses' gradients on "
        "Head 1 and the Trunk, and stop_gradient keeps Loss 2 out of them). "
        f"Received: weighting.method={method!r}"
    )


def on_change(listener):
    """Calls `listener()` after every `register` and `unregister`."""
    _LISTENERS.append(listener)


def _changed():
    for listener in _LISTENERS:
        listener()


# The methods, in the order `keras-mtl config` prints their keys. -------------

register("static", "keras_mtl.weighting.static:StaticWeighting")
register(
    "uncertainty",
    "keras_mtl.weighting.uncertainty:UncertaintyWeighting",
    parameters=[Parameter("learning_rate", 0.01, greater_than(0))],
)
register(
    "dwa",
    "keras_mtl.weighting.dwa:DWAWeighting",
    parameters=[Parameter("temperature", 2.0, greater_than(0))],
)
register(
    "rlw", "keras_mtl.weighting.rlw:RLWWeighting", parameters=[Parameter("seed", 0)]
)
register(
    "gradnorm",
    "keras_mtl.weighting.gradnorm:GradNormWeighting",
    parameters=[
        Parameter("alpha", 1.5, at_least(0.0)),
        Parameter("learning_rate", 0.01, greater_than(0)),
    ],
    allows_stop_gradient=False,
)
register(
    "pcgrad", "keras_mtl.weighting.pcgrad:PCGradWeighting", allows_stop_gradient=False
)
register(
    "famo",
    "keras_mtl.weighting.famo:FAMOWeighting",
    parameters=[
        Parameter("learning_rate", 0.025, greater_than(0)),
        Parameter("gamma", 0.01, at_least(0.0)),
    ],
)
# Balancing methods: dual balancing, impartial, smooth Tchebycheff, aligned.
register(
    "db_mtl",
    "keras_mtl.weighting.db_mtl:DBMTLWeighting",
    parameters=[
        Parameter("beta", 0.9, Constraint("a number in [0, 1)", lambda v: 0 <= v < 1)),
        Parameter("beta_sigma", 0.5, at_least(0.0)),
    ],
    allows_stop_gradient=False,
)
register(
    "imtl",
    "keras_mtl.weighting.imtl:IMTLWeighting",
    parameters=[
        Parameter("loss_scaling", False),
        Parameter("learning_rate", 0.01, greater_than(0)),
    ],
    allows_stop_gradient=False,
)
register(
    "stch",
    "keras_mtl.weighting.stch:STCHWeighting",
    parameters=[
        Parameter("mu", 1.0, greater_than(0)),
        Parameter("warmup_epochs", 1, at_least(1)),
    ],
)
register(
    "aligned_mtl",
    "keras_mtl.weighting.aligned_mtl:AlignedMTLWeighting",
    allows_stop_gradient=False,
)
# Solver methods: FairGrad, Nash-MTL, CAGrad.
register(
    "fairgrad",
    "keras_mtl.weighting.fairgrad:FairGradWeighting",
    parameters=[
        Parameter("alpha", 2.0, greater_than(0)),
        Parameter("max_norm", 1.0, at_least(0.0)),
    ],
    allows_stop_gradient=False,
)
register(
    "nash_mtl",
    "keras_mtl.weighting.nash_mtl:NashMTLWeighting",
    parameters=[
        Parameter("update_every", 1, at_least(1)),
        Parameter("max_norm", 1.0, at_least(0.0)),
    ],
    allows_stop_gradient=False,
)
register(
    "cagrad",
    "keras_mtl.weighting.cagrad:CAGradWeighting",
    parameters=[Parameter("c", 0.4, at_least(0.0))],
    allows_stop_gradient=False,
)
