"""Keras Tuner's oracle internals: where new hyperparameter values come from.

Every built-in oracle of Keras Tuner 1.4 (random search, Bayesian
optimisation's initial points, each new Hyperband bracket) draws a fresh set
of values with `Oracle._random_values()` and skips sets it has tried with
`Oracle._duplicate(values)`. `propose_defaults_first` wraps the first on one
oracle instance so that its first fresh set is the search space's defaults:
the reference trial (the config's own loss weights) runs inside the search,
under every tuner and in distributed mode (only the chief's oracle is
wrapped), and is proposed once, also after a resume (the oracle's state keeps
the sets it has tried).

Each name has a canary test in `tests/test_compat.py`.
"""

from keras_mtl.compat.internals import attribute

FEATURE = "the reference trial of a search"


def default_values(hyperparameters):
    """The default value of every active hyperparameter of a search space."""
    values = {}
    for hp in hyperparameters.space:
        if hyperparameters.is_active(hp):
            values[hp.name] = hp.default
    return values


def propose_defaults_first(oracle):
    """Makes `oracle` propose its space's defaults before any random values.

    Args:
        oracle: A `keras_tuner.Oracle` (not a distributed worker's client).

    Returns:
        `oracle`, changed in place.
    """
    draw = attribute(oracle, "_random_values", FEATURE)
    duplicate = attribute(oracle, "_duplicate", FEATURE)

    def defaults_then_random():
        defaults = default_values(oracle.hyperparameters)
        if defaults and not duplicate(defaults):
            return defaults
        return draw()

    oracle._random_values = defaults_then_random
    return oracle
