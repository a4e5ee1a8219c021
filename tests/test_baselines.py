"""Single-task baselines: the model, the shared budget, the cache, the command."""

import json

import keras
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import cli
from keras_mtl.evaluation import baselines as baselines_lib

from conftest import tiny_overrides


def test_the_single_task_model_is_the_trunk_with_one_head(tiny_config):
    multi = keras_mtl.build_model(tiny_config)
    for task, classes in zip(tiny_config.tasks, (4, 12), strict=True):
        single = keras_mtl.build_single_task_model(tiny_config, task.name)
        assert list(single.output) == [task.name]
        trunk = keras.layers.serialize(single.get_layer("trunk"))
        assert trunk == keras.layers.serialize(multi.get_layer("trunk"))
        assert (
            single.get_layer("trunk").count_params()
            == multi.get_layer("trunk").count_params()
        )
        head, head1 = single.get_layer("head"), multi.get_layer("head1")
        assert (head.units, head.depth) == (head1.units, head1.depth)
        assert single.output[task.name].shape == (None, classes)
        assert [layer.name for layer in single.layers if "head" in layer.name] == [
            "head"
        ]


def test_an_unknown_task_is_refused(tiny_config):
    with pytest.raises(ValueError, match=r"No task 'nope'.*\['coarse', 'fine'\]"):
        keras_mtl.build_single_task_model(tiny_config, "nope")


def test_baselines_train_once_per_config_and_seed(
    tiny_config, tmp_path, shapes_data_dir, monkeypatch, capsys
):
    baselines = keras_mtl.train_baselines(tiny_config, seeds=[0, 1])
    cached = sorted(
        (keras_mtl.training.run_dir_for(tiny_config) / "baselines").iterdir()
    )
    assert [path.name.split("-")[0] for path in cached] == ["coarse"] * 2 + ["fine"] * 2
    assert [path.name[-10:] for path in cached[2:]] == ["seed0.json", "seed1.json"]
    record = json.loads(cached[2].read_text())
    assert record["fields"]["train"]["epochs"] == tiny_config.train.epochs == 1
    assert record["epochs_run"] == 1 and len(record["history"]["val_accuracy"]) == 1
    assert set(record["validation"]) == set(record["test"]) == {"loss", "accuracy"}
    assert 0.0 <= record["test"]["accuracy"] <= 1.0
    assert baselines.metrics("test", seed=0)["fine"] == record["test"]
    accuracy = baselines.summary()["fine"]["test"]["accuracy"]
    assert len(accuracy["values"]) == 2 and accuracy["std"] is not None
    assert accuracy["mean"] == pytest.approx(sum(accuracy["values"]) / 2)
    assert baselines.metrics("test")["fine"]["accuracy"] == accuracy["mean"]

    def must_not_train(*args, **kwargs):
        raise AssertionError("a cached baseline was trained again")

    monkeypatch.setattr(baselines_lib, "train_baseline", must_not_train)
    # Loss weights, Head 2's wiring and the replica count do not change a baseline.
    same = tiny_config.replace(
        ["tasks.fine.weight=5", "model.stop_gradient=true", "train.replicas=2"]
    )
    metrics = baselines.metrics("test", seed=1)
    assert keras_mtl.train_baselines(same, seeds=[1]).metrics("test") == metrics
    # The model, the budget and the seed do.
    for overrides in (["model.width=4"], ["train.epochs=2"], ["data.max_examples=256"]):
        assert keras_mtl.load_baselines(tiny_config.replace(overrides)) is None
    assert keras_mtl.load_baselines(tiny_config, seeds=[2]) is None

    # The command reads the same cache.
    sets = [
        arg
        for override in tiny_overrides(tmp_path, shapes_data_dir)
        for arg in ("--set", override)
    ]
    args = ["baseline", "--preset", "shapes", *sets, "--seeds", "0", "1"]
    assert cli.main([*args, "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["seeds"] == [0, 1]
    assert output["tasks"]["fine"]["test"]["accuracy"] == accuracy
    assert cli.main(args) == 0
    table = capsys.readouterr().out
    assert "| fine | accuracy | higher |" in table and " +- " in table
    assert cli.main([*args[:-2], "-1"]) == 2
    assert "seeds >= 0" in capsys.readouterr().err


def test_a_baseline_depends_on_its_seed_alone_not_on_what_trained_before(
    tiny_config,
):
    # Two tasks and two seeds trained in one call, against seed 1 alone in
    # another run directory: each baseline gets a fresh pipeline seeded with
    # its own seed, so seed 1's records are the same.
    config = tiny_config.replace(["train.epochs=2"])
    both = keras_mtl.train_baselines(config, seeds=[0, 1])
    alone = keras_mtl.train_baselines(
        config.replace(["name=alone"]), seeds=[1], retrain=True
    )
    for task in ("coarse", "fine"):
        first, second = both.records[task][1], alone.records[task][1]
        assert first["history"] == second["history"]
        assert first["test"] == second["test"]
    # A shared pipeline carries its shuffle state from one fit to the next:
    # the same baseline trained on it after another one differs.
    shared = keras_mtl.load_datasets(config.replace(["train.seed=1"]))
    after = [
        baselines_lib.train_baseline(
            config, task, 1, datasets=shared, strategy=tf.distribute.get_strategy()
        )
        for task in ("coarse", "fine")
    ][1]
    assert after["history"]["loss"] != both.records["fine"][1]["history"]["loss"]


def test_only_the_tasks_own_label_fraction_changes_its_baseline():
    from keras_mtl.evaluation.baselines import baseline_key

    config = keras_mtl.load_config("shapes")
    scarce = config.replace(["data.label_fraction={fine=0.05}"])
    assert baseline_key(scarce, "coarse") == baseline_key(config, "coarse")
    assert baseline_key(scarce, "fine") != baseline_key(config, "fine")
    scheduled = config.replace(["train.lr_schedule=plateau"])
    assert baseline_key(scheduled, "coarse") != baseline_key(config, "coarse")
