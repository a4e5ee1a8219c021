"""The weighting registry: one registration gives a method its config keys,
their checks, the stop-gradient refusal and its construction."""

import ast
import dataclasses
import inspect
import sys
from pathlib import Path

import pytest
from keras import ops

import keras_mtl
from keras_mtl.config import weighting_methods
from keras_mtl.config.weighting_methods import Parameter, greater_than
from keras_mtl.data.features import NumericFeature
from keras_mtl.weighting import METHODS, Weighting, make_weighting

CONFIG_DIR = Path(keras_mtl.config.__file__).parent


class FixedShareWeighting(Weighting):
    """A throwaway method: Head 2's loss gets a fixed share of the total."""

    method = "fixed_share"

    def __init__(self, task_names, head2=0.5):
        super().__init__(task_names)
        self.head2 = head2

    def get_config(self):
        return {**super().get_config(), "head2": self.head2}

    def loss_weights(self, model, losses, training=True):
        return ops.convert_to_tensor([1.0 - self.head2, self.head2])


@pytest.fixture
def fixed_share():
    registration = weighting_methods.register(
        "fixed_share",
        f"{__name__}:FixedShareWeighting",
        parameters=[Parameter("head2", 0.5, greater_than(0))],
        allows_stop_gradient=False,
    )
    yield registration
    weighting_methods.unregister("fixed_share")


def test_a_registered_method_gets_config_keys_checks_and_construction(fixed_share):
    config = keras_mtl.load_config(
        "adult", ["weighting.method=fixed_share", "weighting.fixed_share_head2=0.25"]
    )
    assert isinstance(config.weighting, keras_mtl.WeightingConfig)
    assert config.weighting.fixed_share_head2 == 0.25
    assert "fixed_share_head2 = 0.25" in config.to_toml()
    assert keras_mtl.config_from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="`weighting.fixed_share_head2` must be a"):
        config.replace(["weighting.fixed_share_head2=0"])
    with pytest.raises(
        ValueError, match="other than 'gradnorm', 'pcgrad'.* or 'fixed_share'"
    ):
        config.replace(["model.stop_gradient=true"])

    weighting = make_weighting(config)
    assert isinstance(weighting, FixedShareWeighting)
    assert weighting.task_names == config.task_names and weighting.head2 == 0.25
    assert METHODS["fixed_share"] is FixedShareWeighting
    assert weighting_methods.spec(weighting.method) is fixed_share


def test_a_registered_method_refuses_a_model_that_cuts_loss2(fixed_share):
    config = keras_mtl.load_config("adult", ["model.stop_gradient=true"])
    features = [NumericFeature(f"x{i}", 0.0, 1.0) for i in range(2)]
    model = keras_mtl.build_model(config, features)
    with pytest.raises(ValueError, match="whose Head 2 has stop_gradient=True"):
        model.set_weighting(FixedShareWeighting(config.task_names))


def test_unregistering_removes_the_keys(fixed_share):
    weighting_methods.unregister("fixed_share")
    try:
        field_names = [f.name for f in dataclasses.fields(keras_mtl.WeightingConfig)]
        assert "fixed_share_head2" not in field_names
        assert "fixed_share" not in METHODS
        with pytest.raises(ValueError, match="Unknown config key"):
            keras_mtl.load_config("shapes", ["weighting.fixed_share_head2=1"])
    finally:
        weighting_methods.register(
            fixed_share.name,
            fixed_share.class_path,
            fixed_share.parameters,
            allows_stop_gradient=False,
        )


def test_registrations_match_the_classes():
    for registration in weighting_methods.specs():
        cls = registration.load_class()
        assert cls.method == registration.name
        assert weighting_methods.spec(cls.method) is registration
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(cls).parameters.items()
            if name != "task_names"
        }
        assert defaults == {p.name: p.default for p in registration.parameters}


def test_keys_keep_their_names_and_order():
    names = [f.name for f in dataclasses.fields(keras_mtl.WeightingConfig)]
    assert names == [
        "method",
        "uncertainty_learning_rate",
        "dwa_temperature",
        "rlw_seed",
        "gradnorm_alpha",
        "gradnorm_learning_rate",
        "famo_learning_rate",
        "famo_gamma",
        "db_mtl_beta",
        "db_mtl_beta_sigma",
        "imtl_loss_scaling",
        "imtl_learning_rate",
        "stch_mu",
        "stch_warmup_epochs",
        "fairgrad_alpha",
        "fairgrad_max_norm",
        "nash_mtl_update_every",
        "nash_mtl_max_norm",
        "cagrad_c",
        "diagnostics",
    ]


@pytest.mark.parametrize(
    "name, class_path, parameters, fragment",
    [
        ("dwa", "m:C", (), "already registered"),
        ("uncertainty", "m:C", (), "already registered"),
        ("new-method", "m:C", (), "Python identifier"),
        ("new", "no_colon", (), "'module:Class'"),
        ("famo_learning", "m:C", [Parameter("rate", 1.0)], "already taken"),
        ("new", "m:C", [Parameter("a", 1.0), Parameter("a", 2.0)], "already taken"),
        ("new", "m:C", [Parameter("sizes", [1])], "bool, int, float or str"),
    ],
)
def test_bad_registrations_are_refused(name, class_path, parameters, fragment):
    before = weighting_methods.specs()
    with pytest.raises(ValueError, match=fragment):
        weighting_methods.register(name, class_path, parameters)
    assert weighting_methods.specs() == before


def _imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module


def test_the_config_package_imports_only_the_standard_library_and_itself():
    for path in CONFIG_DIR.glob("*.py"):
        for module in _imported_modules(path):
            top = module.split(".")[0]
            assert top in sys.stdlib_module_names or module.startswith(
                "keras_mtl.config"
            ), f"{path.name} imports {module}"
