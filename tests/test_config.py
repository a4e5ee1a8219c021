import json
import re

import pytest

import keras_mtl
from keras_mtl.config import load_config
from keras_mtl.config.loading import load_config_file, load_preset


@pytest.mark.parametrize(
    "preset",
    ["shapes", "adult", "cifar100", "mmoe_synthetic", "funnel_esmm", "adult_ple"],
)
def test_presets_load_with_two_tasks(preset):
    config = load_config(preset)
    assert config.name == preset
    assert len(config.tasks) == 2
    assert preset in keras_mtl.list_presets()


def test_shapes_is_the_default_preset():
    config = load_config()
    assert config.data.source == "shapes"
    assert config.task_names == ["coarse", "fine"]
    assert config.model.trunk == "cnn"


def test_overrides_are_typed_and_reach_tasks_by_name_or_index():
    config = load_config(
        "shapes",
        [
            "train.epochs=3",
            "train.learning_rate=1e-4",
            "tasks.fine.weight=0.5",
            "tasks.0.weight=2",
            "data.source=csv",  # bare strings need no quotes
            "data.path='x.csv'",
            "model.stop_gradient=true",
            "data.exclude_columns=['a', 'b']",
        ],
    )
    assert config.train.epochs == 3
    assert config.train.learning_rate == pytest.approx(1e-4)
    assert config.tasks[1].weight == 0.5
    assert config.tasks[0].weight == 2.0 and isinstance(config.tasks[0].weight, float)
    assert config.data.source == "csv" and config.data.path == "x.csv"
    assert config.model.stop_gradient is True
    assert config.data.exclude_columns == ["a", "b"]


def test_toml_round_trip(tmp_path):
    config = load_config("adult", ["tasks.income.weight=0.25", "train.replicas=2"])
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml())
    assert load_config(str(path)) == config


def test_unknown_key_names_key_file_and_known_keys(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(load_config("shapes").to_toml().replace("epochs = ", "epoch = "))
    with pytest.raises(ValueError) as error:
        load_config(str(path))
    message = str(error.value)
    assert "'train.epoch'" in message
    assert str(path) in message
    assert "epochs" in message and "batch_size" in message


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.epochs='three'", "`train.epochs` must be an integer"),
        ("train.epochs=0", "`train.epochs` must be >= 1"),
        ("train.learning_rate=-1", "`train.learning_rate` must be a number > 0"),
        (
            "model.trunk='resnet'",
            "`model.trunk` must be one of ['mlp', 'cnn', 'mmoe', 'ple', 'keras.applications.<Name>', 'keras_hub:<preset>']",
        ),
        ("train.strategy=tpu", "`train.strategy` must be one of"),
        ("tasks.0.kind=ranking", "`tasks.0.kind` must be one of"),
        ("tasks.1.num_classes=1", "`tasks.1.num_classes` must be >= 2"),
        ("tasks.0.weight=-0.5", "`tasks.0.weight` must be >= 0.0"),
        ("tasks.1.name=coarse", "two different task names"),
        ("model.stop_gradient=1", "`model.stop_gradient` must be true or false"),
        ("data.validation_fraction=0.95", "`data.validation_fraction` must be"),
        ("data.source=csv", "`data.path` must be the path of a CSV file"),
        (
            "train.replicas=3",
            "`train.batch_size` must be divisible by train.replicas=3",
        ),
        ("tasks.2.weight=1", "no task '2'"),
        ("train.epochs", "expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_key_and_what_was_expected(override, fragment):
    with pytest.raises(ValueError) as error:
        load_config("shapes", [override])
    assert fragment in str(error.value)
    if "must be" in str(error.value):
        assert "presets/shapes.toml" in str(error.value)


def test_exactly_two_tasks_are_required(tmp_path):
    text = load_config("shapes").to_toml()
    path = tmp_path / "one_task.toml"
    path.write_text(text[: text.rindex("[[tasks]]")])
    with pytest.raises(
        ValueError, match="expected exactly two \\[\\[tasks\\]\\] tables"
    ):
        load_config(str(path))


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError, match="Unknown preset 'shape'.*'shapes'"):
        load_config("shape")


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(ValueError, match="broken.toml: not valid TOML"):
        load_config(str(path))


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("weighting.method=gradnrom", "`weighting.method` must be one of"),
        ("weighting.dwa_temperature=0", "`weighting.dwa_temperature` must be a number"),
        ("weighting.famo_gamma=-1", "`weighting.famo_gamma` must be >= 0.0"),
        ("weighting.rlw_seed=1.5", "`weighting.rlw_seed` must be an integer"),
        ("weighting.temperature=2", "Unknown config key 'weighting.temperature'"),
    ],
)
def test_weighting_keys_are_checked(override, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        load_config("shapes", [override])


def test_gradient_methods_refuse_a_cut_gradient():
    for method in ("gradnorm", "pcgrad"):
        with pytest.raises(ValueError, match="model.stop_gradient=true"):
            load_config(
                "shapes", [f"weighting.method={method}", "model.stop_gradient=true"]
            )
    config = load_config("shapes", ["weighting.method=famo", "weighting.rlw_seed=3"])
    assert config.weighting.method == "famo" and config.weighting.rlw_seed == 3
    assert "[weighting]" in config.to_toml()


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "../up", "a b", ""])
def test_a_name_is_one_safe_directory_name(name):
    with pytest.raises(ValueError, match=r"`name` must be one directory name"):
        load_config("shapes", [f"name={json.dumps(name)}"])


@pytest.mark.parametrize("name", ["shapes-v2", "run_1.2", "Adult"])
def test_names_of_letters_digits_dash_underscore_dot_are_kept(name):
    assert load_config("shapes", [f"name={name}"]).name == name


def test_a_directory_is_never_read_as_a_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shapes").mkdir()  # as in saved_models/ or runs/
    assert load_config("shapes").name == "shapes"
    assert load_config().name == "shapes"
    (tmp_path / "run.toml").mkdir()
    with pytest.raises(ValueError, match="run.toml is a directory; expected a TOML"):
        load_config("run.toml")
    with pytest.raises(ValueError, match="shapes is a directory; expected a TOML"):
        load_config_file(tmp_path / "shapes")
    with pytest.raises(ValueError, match="Unknown preset 'run.toml'"):
        load_preset("run.toml")


def test_a_config_file_must_be_utf8_and_may_start_with_a_bom(tmp_path):
    text = load_config("shapes", ["name=café"]).to_toml()
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    assert load_config(str(path)).name == "café"
    path = tmp_path / "latin1.toml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.toml: a config file must be UTF-8"):
        load_config(str(path))
