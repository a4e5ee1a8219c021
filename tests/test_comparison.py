"""compare_weightings: every method trained alike, one table with delta-m."""

import tomllib
import types

import keras
import pytest

import keras_mtl
from keras_mtl.evaluation.comparison import MethodRun, WeightingComparison


def test_methods_train_alike_and_the_table_holds_their_measurements(tiny_config):
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
        assert row["delta_m"] == {"mean": pytest.approx(expected), "std": None}
        assert row["fine_accuracy"]["mean"] == run.report.test["fine"]["accuracy"]
        assert row["coarse_loss"]["mean"] == run.report.test["coarse"]["loss"]
        history = run.history.history
        assert row["fine_weight"]["mean"] == history["fine_weight"][-1]
        assert row["delta_m_fine"] == pytest.approx(
            keras_mtl.delta_m_per_task(
                run.report.test, baselines.metrics("test"), tiny_config
            )["fine"]
        )
    static, uncertainty = comparison.rows
    assert static["coarse_weight"]["mean"] == static["fine_weight"]["mean"] == 1.0
    # Uncertainty starts at 0.5 exp(0) and learns: never the static 1.0.
    assert uncertainty["fine_weight"]["mean"] == pytest.approx(0.5, abs=0.1)
    table = comparison.to_markdown()
    assert "| single-task baselines |" in table
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


@pytest.mark.parametrize(
    "methods",
    [["static", "sgd"], [], ["famo", "famo"]],
    ids=["unknown", "none", "twice"],
)
def test_bad_methods_are_refused_before_training(methods):
    config = keras_mtl.load_config("shapes")
    with pytest.raises(ValueError, match="Expected distinct weighting methods"):
        keras_mtl.compare_weightings(config, methods)
