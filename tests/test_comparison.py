"""compare_weightings: every method trained alike, one table with delta-m."""

import json
import tomllib
import types

import keras
import numpy as np
import pytest

import keras_mtl
from keras_mtl.evaluation.comparison import (
    PROTOCOL_OVERRIDES,
    MethodRun,
    WeightingComparison,
)


def test_methods_train_alike_and_the_table_holds_their_measurements(tiny_config):
    # The protocol's callbacks run too: early stopping on the unweighted
    # validation loss and the plateau schedule.
    tiny_config = tiny_config.replace(list(PROTOCOL_OVERRIDES))
    comparison = keras_mtl.compare_weightings(tiny_config, ["static", "uncertainty"])
    baselines = keras_mtl.load_baselines(tiny_config)
    assert baselines is not None, "the baselines are trained and cached"
    assert [row["method"] for row in comparison.rows] == ["static", "uncertainty"]
    for row in comparison.rows:
        (run,) = comparison.runs[row["method"]]
        saved = tomllib.loads((run.run_dir / "config.toml").read_text())
        assert saved["weighting"]["method"] == row["method"]
        assert run.run_dir.parent.name == f"{row['method']}-seed0"
        expected = keras_mtl.delta_m(
            run.report.test, baselines.metrics("test"), tiny_config
        )
        assert row["delta_m"]["mean"] == pytest.approx(expected)
        assert row["delta_m"]["std"] is None
        assert row["vs_single_task"]["delta_m"]["mean"] == pytest.approx(expected)
        logs = run.history.history
        assert logs["val_unweighted_loss"] == pytest.approx(
            [
                a + b
                for a, b in zip(
                    logs["val_coarse_loss"], logs["val_fine_loss"], strict=True
                )
            ]
        )
        assert logs["learning_rate"][0] == pytest.approx(
            tiny_config.train.learning_rate
        )
        assert row["fine_accuracy"]["mean"] == run.report.test["fine"]["accuracy"]
        assert row["at_epoch_cap"] == int(
            len(run.history.epoch) == tiny_config.train.epochs
        )
        assert row["coarse_loss"]["mean"] == run.report.test["coarse"]["loss"]
        history = run.history.history
        assert row["fine_weight"]["mean"] == history["fine_weight"][-1]
        assert row["delta_m_fine"] == pytest.approx(
            keras_mtl.delta_m_per_task(
                run.report.test, baselines.metrics("test"), tiny_config
            )["fine"]
        )
    assert comparison.max_epochs == tiny_config.train.epochs
    capped = {
        task: sum(
            record["epochs_run"] == tiny_config.train.epochs
            for record in baselines.records[task].values()
        )
        for task in ("coarse", "fine")
    }
    assert baselines.at_epoch_cap() == {task: (n, 1) for task, n in capped.items()}
    static, uncertainty = comparison.rows
    assert static["vs_reference"] is None
    assert uncertainty["vs_reference"]["delta_m"]["mean"] == pytest.approx(
        uncertainty["delta_m"]["mean"] - static["delta_m"]["mean"]
    )
    assert static["coarse_weight"]["mean"] == static["fine_weight"]["mean"] == 1.0
    # Uncertainty starts at 0.5 exp(0) and learns: never the static 1.0.
    assert uncertainty["fine_weight"]["mean"] == pytest.approx(0.5, abs=0.1)
    table = comparison.to_markdown()
    assert "| single-task models |" in table
    assert f"{static['delta_m']['mean']:+.2f}" in table
    assert f"{uncertainty['fine_weight']['mean']:.3f}" in table
    best = min(comparison.rows, key=lambda row: row["delta_m"]["mean"])
    assert comparison.best() == best["method"]
    # Whatever was seeded before (here the baselines are cached, so nothing
    # trains before the run), a method sees the same batches and trains alike.
    keras.utils.set_random_seed(456)
    again = keras_mtl.compare_weightings(tiny_config, ["static"])
    first = comparison.runs["static"][0].history.history
    assert again.runs["static"][0].history.history == first


def _fake_run(method, seed, accuracy, weight):
    report = keras_mtl.EvaluationReport(
        validation=None,
        test={
            "coarse": {"loss": 1.0, "accuracy": accuracy},
            "fine": {"loss": 2.0, "accuracy": accuracy / 2},
        },
        tasks=keras_mtl.load_config("shapes").tasks,
    )
    history = types.SimpleNamespace(
        history={"coarse_weight": [1.0, weight], "fine_weight": [1.0, 2 - weight]},
        epoch=[0, 1],
    )
    return MethodRun(method, seed, None, history, report, 4.0, None)


def test_several_seeds_give_a_mean_and_a_standard_deviation():
    tasks = keras_mtl.load_config("shapes").tasks
    metrics = {"loss": 1.0, "accuracy": 0.5}
    records = {
        name: {seed: {"validation": metrics, "test": metrics} for seed in (0, 1)}
        for name in ("coarse", "fine")
    }
    baselines = keras_mtl.Baselines(tasks, records)
    runs = {"famo": [_fake_run("famo", 0, 0.6, 0.8), _fake_run("famo", 1, 0.4, 1.2)]}
    comparison = WeightingComparison(tasks, runs, baselines)
    (row,) = comparison.rows
    assert row["coarse_accuracy"]["mean"] == pytest.approx(0.5)
    assert row["coarse_accuracy"]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert row["coarse_weight"]["mean"] == pytest.approx(1.0)
    assert row["seconds_per_epoch"]["mean"] == 2.0
    # Against 0.5: seed 0 is (-20 + 40) / 2 = +10 %, seed 1 (+20 + 60) / 2 = +40 %.
    assert row["delta_m"]["mean"] == pytest.approx(25.0)
    assert row["delta_m"]["std"] == pytest.approx(21.2132, abs=1e-4)
    assert "+- " in comparison.to_markdown()
    with pytest.raises(ValueError, match="no validation metrics"):
        WeightingComparison(tasks, runs, baselines, split="validation")


def test_runs_and_baselines_that_the_epoch_cap_ended_are_counted_and_flagged():
    tasks = keras_mtl.load_config("shapes").tasks
    metrics = {"loss": 1.0, "accuracy": 0.5}

    def record(epochs_run):
        return {
            "validation": metrics,
            "test": metrics,
            "epochs_run": epochs_run,
            "fields": {"train": {"epochs": 2}},
        }

    records = {
        "coarse": {0: record(1), 1: record(1)},  # early stopping ended both
        "fine": {0: record(2), 1: record(1)},  # seed 0 trained every epoch
    }
    baselines = keras_mtl.Baselines(tasks, records)
    assert baselines.at_epoch_cap() == {"coarse": (0, 2), "fine": (1, 2)}
    assert baselines.to_dict()["at_epoch_cap"]["fine"] == {"runs": 1, "of": 2}
    # Each fake run trains 2 epochs.
    runs = {"famo": [_fake_run("famo", 0, 0.6, 0.8), _fake_run("famo", 1, 0.4, 1.2)]}
    capped = WeightingComparison(tasks, runs, baselines, max_epochs=2)
    assert capped.rows[0]["at_epoch_cap"] == 2
    note = capped.epoch_cap_note()
    assert "`train.epochs` = 2" in note
    assert "famo 2 of 2" in note and "single-task fine 1 of 2" in note
    assert "coarse" not in note
    table = capped.to_markdown()
    assert note in table and "2.0 +- 0.0 (2 at the cap)" in table
    assert capped.to_dict()["max_epochs"] == 2
    # A cap the runs never reached: nothing flagged, but the baseline still is.
    roomy = WeightingComparison(tasks, runs, baselines, max_epochs=3)
    assert roomy.rows[0]["at_epoch_cap"] == 0
    assert "): single-task fine 1 of 2. These runs" in roomy.epoch_cap_note()
    # Without the cap (or baselines that do not record it) nothing is said.
    unknown = WeightingComparison(tasks, runs, baselines)
    assert unknown.rows[0]["at_epoch_cap"] is None
    assert unknown.epoch_cap_note() is None
    plain = keras_mtl.Baselines(
        tasks, {name: {0: {"validation": metrics, "test": metrics}} for name in records}
    )
    assert plain.at_epoch_cap() == {"coarse": (0, 0), "fine": (0, 0)}


@pytest.mark.parametrize(
    "methods",
    [["static", "sgd"], [], ["famo", "famo"]],
    ids=["unknown", "none", "twice"],
)
def test_bad_methods_are_refused_before_training(methods):
    config = keras_mtl.load_config("shapes")
    with pytest.raises(ValueError, match="Expected distinct weighting methods"):
        keras_mtl.compare_weightings(config, methods)


def _seeded_runs(method, accuracies):
    return [
        _fake_run(method, seed, accuracy, 1.0)
        for seed, accuracy in enumerate(accuracies)
    ]


def test_paired_differences_to_equal_weights_and_single_task(tmp_path):
    tasks = keras_mtl.load_config("shapes").tasks
    baseline_accuracy = [0.50, 0.60, 0.70]
    records = {
        name: {
            seed: {"validation": None, "test": {"loss": 1.0, "accuracy": a * scale}}
            for seed, a in enumerate(baseline_accuracy)
        }
        for name, scale in (("coarse", 1.0), ("fine", 0.5))
    }
    baselines = keras_mtl.Baselines(tasks, records)
    runs = {
        "static": _seeded_runs("static", [0.50, 0.60, 0.70]),
        "famo": _seeded_runs("famo", [0.55, 0.66, 0.77]),
    }
    trees = {
        seed: {
            "test": {
                "coarse": {"loss": 1.0, "accuracy": a},
                "fine": {"loss": 1.0, "accuracy": a / 2},
            }
        }
        for seed, a in enumerate([0.45, 0.62, 0.66])
    }
    comparison = WeightingComparison(tasks, runs, baselines, extra={"trees": trees})
    static, famo, tree_row = comparison.rows
    # Seed by seed, famo is 10 % better on both tasks: delta-m -10 exactly.
    assert famo["delta_m"]["values"] == pytest.approx([-10.0] * 3)
    assert famo["vs_single_task"]["delta_m"]["significant"]
    assert famo["vs_reference"]["delta_m"]["mean"] == pytest.approx(-10.0)
    expected = keras_mtl.evaluation.paired_difference(
        [0.50, 0.60, 0.70], [0.55, 0.66, 0.77]
    )
    assert famo["vs_reference"]["coarse"] == pytest.approx(expected)
    assert static["vs_single_task"]["delta_m"]["mean"] == pytest.approx(0.0)
    assert not static["vs_single_task"]["delta_m"]["significant"]
    assert tree_row["method"] == "trees" and tree_row["coarse_weight"] is None
    assert not tree_row["vs_reference"]["delta_m"]["significant"]
    assert comparison.best() == "famo"
    table = comparison.to_markdown()
    assert "-10.00 [-10.00, -10.00] *" in table
    assert "| trees |" in table and "+6.00 [+3.52, +8.48] *" in table  # famo - static
    written = comparison.save(tmp_path / "out")
    assert [path.suffix for path in written] == [".md", ".json", ".png", ".svg"]
    assert all(path.stat().st_size > 0 for path in written)
    saved = json.loads(written[1].read_text())
    assert saved["reference"] == "static" and len(saved["rows"]) == 3


def test_a_seed_starts_every_method_and_the_baseline_from_one_trunk():
    config = keras_mtl.load_config(
        "shapes", ["model.width=4", "model.depth=1", "model.head_units=4"]
    )

    def trunk_weights(build):
        keras.utils.set_random_seed(7)
        return [w.numpy() for w in build().get_layer("trunk").weights]

    static = trunk_weights(lambda: keras_mtl.build_model(config))
    for other in (
        lambda: keras_mtl.build_model(config.replace(["weighting.method=famo"])),
        lambda: keras_mtl.build_single_task_model(config, "fine"),
    ):
        assert all(
            np.array_equal(a, b)
            for a, b in zip(static, trunk_weights(other), strict=True)
        )
    keras.utils.set_random_seed(8)
    other_seed = keras_mtl.build_model(config).get_layer("trunk").weights[0].numpy()
    assert not np.array_equal(static[0], other_seed)


def test_seed_overrides_pair_the_split_only_when_asked():
    from keras_mtl.evaluation.comparison import seed_overrides

    assert seed_overrides(3) == ["train.seed=3"]
    assert seed_overrides(3, resample_split=True) == ["train.seed=3", "data.seed=3"]
    config = keras_mtl.load_config("shapes")
    with pytest.raises(ValueError, match="distinct seeds"):
        keras_mtl.compare_weightings(config, ["static"], seeds=[1, 1])
    with pytest.raises(ValueError, match="data.source='csv'"):
        keras_mtl.compare_weightings(config, ["static"], gradient_boosting=True)
