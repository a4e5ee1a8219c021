"""Loss-weight tuning: objectives, the val_loss trap, search, resume, export."""

import csv
import json
import sys

import keras
import pytest

import keras_mtl
from keras_mtl import cli
from keras_mtl.tuning import TaskObjectives, apply_values, resolve_objective
from keras_mtl.tuning.hypermodel import _one_iterator, check_search_space
from keras_mtl.tuning.selection import select_trial

from conftest import TrunkRecorder, tiny_overrides


class CountFits(keras.callbacks.Callback):
    """Counts `model.fit` calls across trials; raises at fit number `stop_at`.

    Keras Tuner deep-copies callbacks for every trial, so the count lives on
    the class.
    """

    fits = 0
    stop_at = None

    def on_train_begin(self, logs=None):
        CountFits.fits += 1
        if CountFits.fits == CountFits.stop_at:
            raise KeyboardInterrupt("interrupted as a trial starts")


def count_fits(stop_at=None):
    CountFits.fits, CountFits.stop_at = 0, stop_at
    return CountFits()


def test_objectives_resolve_to_weight_free_metrics_with_directions(tiny_config):
    def resolve(name, baselines=False):
        config = tiny_config.replace([f"tuning.objective={name}"])
        objective = resolve_objective(config, baselines)
        return objective.name, objective.direction

    assert resolve("auto") == ("val_unweighted_loss", "min")
    assert resolve("auto", baselines=True) == ("val_delta_m", "min")
    assert resolve("delta_m") == ("val_delta_m", "min")
    assert resolve("val_unweighted_loss") == ("val_unweighted_loss", "min")
    assert resolve("val_fine_accuracy") == ("val_fine_accuracy", "max")
    assert resolve("val_coarse_loss") == ("val_coarse_loss", "min")
    with pytest.raises(ValueError, match="weighted sum of the task losses"):
        resolve("val_loss")
    with pytest.raises(ValueError, match="validation split: 'val_fine_accuracy'"):
        resolve("fine_accuracy")
    with pytest.raises(ValueError, match=r"Unknown tuning.objective 'val_fine_auc'"):
        resolve("val_fine_auc")


def test_the_search_space_sets_weights_learning_rate_and_choices(tiny_config):
    config = tiny_config.replace(
        ["tuning.choices.model.width=[4, 8]", 'tuning.choices.model.trunk=["mlp"]']
    )
    trial = apply_values(
        config, {"weight_ratio": 0.25, "learning_rate": 0.01, "model.width": 4}
    )
    assert [task.weight for task in trial.tasks] == [1.0, 0.25]
    assert trial.train.learning_rate == 0.01 and trial.model.width == 4
    assert trial.model.trunk == config.model.trunk  # not sampled: unchanged
    for choices, fragment in [
        ("tuning.choices.data.max_examples=[10]", "cannot be tuned"),
        ("tuning.choices.tasks.fine.weight=[1.0]", "cannot be tuned"),
        ("tuning.choices.model.width=[4, 'wide']", "of one type"),
        ('tuning.choices.model.trunk=["rnn"]', "tuning.choices.model.trunk`: .*mlp"),
        ("tuning.choices.model.widht=[4]", "Unknown config key 'model.widht'"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            check_search_space(tiny_config.replace([choices]))


def test_tuning_config_round_trips_through_toml(tiny_config, tmp_path):
    config = tiny_config.replace(
        ["tuning.choices.model.width=[4, 8]", "tuning.learning_rate=[1e-4, 1e-2]"]
    )
    assert config.tuning.choices == {"model.width": [4, 8]}
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert keras_mtl.load_config(str(path)) == config
    with pytest.raises(ValueError, match=r"`tuning.weight_ratio` must be \[min, max\]"):
        tiny_config.replace(["tuning.weight_ratio=[0.0, 1.0]"])
    with pytest.raises(ValueError, match="Unknown config key 'tuning.trials'"):
        tiny_config.replace(["tuning.trials=3"])


def test_a_weighted_val_loss_prefers_small_weights_and_ours_do_not(tiny_config):
    """Under Adam, scaling both weights trains the same model; only val_loss moves."""
    reference = {"coarse": {"accuracy": 0.25}, "fine": {"accuracy": 0.1}}
    datasets = keras_mtl.load_datasets(tiny_config.replace(["train.shuffle=false"]))
    logs = {}
    for scale in (0.1, 1.0, 10.0):
        config = tiny_config.replace(
            [f"tasks.coarse.weight={scale}", f"tasks.fine.weight={scale}"]
        )
        keras.utils.set_random_seed(0)
        model = keras_mtl.build_model(config, datasets.features)
        history = model.fit(
            datasets.train,
            validation_data=datasets.validation,
            epochs=1,
            verbose=0,
            shuffle=False,
            callbacks=[TaskObjectives(config.tasks, reference)],
        )
        logs[scale] = {key: values[-1] for key, values in history.history.items()}

    val_loss = {scale: logs[scale]["val_loss"] for scale in logs}
    assert val_loss[0.1] / val_loss[1.0] == pytest.approx(0.1, rel=1e-3)
    assert val_loss[10.0] / val_loss[1.0] == pytest.approx(10.0, rel=1e-3)
    assert min(val_loss, key=val_loss.get) == 0.1  # the trap: smallest weights win
    for name in ("val_unweighted_loss", "val_delta_m"):
        values = [logs[scale][name] for scale in logs]
        assert max(values) - min(values) <= 1e-3 * abs(values[1]) + 1e-6, name
    # The objectives are what they claim to be.
    one = logs[1.0]
    assert one["val_unweighted_loss"] == pytest.approx(
        one["val_coarse_loss"] + one["val_fine_loss"]
    )
    assert one["val_delta_m"] == pytest.approx(
        keras_mtl.delta_m(
            {t: {"accuracy": one[f"val_{t}_accuracy"]} for t in ("coarse", "fine")},
            reference,
            tiny_config.tasks,
        )
    )


@pytest.fixture(scope="module")
def search(tmp_path_factory, shapes_data_dir):
    """Baselines, then a 3-trial search (2 executions each) interrupted as
    trial 1 starts and rerun."""
    workdir = tmp_path_factory.mktemp("search")
    config = keras_mtl.load_config(
        "shapes",
        [
            *tiny_overrides(workdir, shapes_data_dir),
            "tuning.max_trials=3",
            "tuning.learning_rate=[0.001, 0.01]",
        ],
    )
    baselines = keras_mtl.train_baselines(config)
    with pytest.raises(KeyboardInterrupt):
        keras_mtl.run_search(config, verbose=0, callbacks=[count_fits(stop_at=3)])
    project = keras_mtl.tuning.project_dir_for(config)
    first = json.loads((project / "trial_0" / "trial.json").read_text())
    counter = count_fits()
    result = keras_mtl.run_search(config, verbose=0, callbacks=[counter])
    return {
        "config": config,
        "baselines": baselines,
        "first_trial": first,
        "fits": CountFits.fits,
        "result": result,
        "workdir": workdir,
    }


def test_an_interrupted_search_resumes_where_it_stopped(search):
    result = search["result"]
    # The interrupted trial again, then the third: 2 executions each.
    assert search["fits"] == 4
    assert [row["trial"] for row in result.rows] == ["0", "1", "2"]
    assert {row["status"] for row in result.rows} == {"COMPLETED"}
    first = search["first_trial"]
    assert first["status"] == "COMPLETED"
    assert result.rows[0]["objective"] == pytest.approx(first["score"])
    # Trial 0 is the reference: the config's own weights and learning rate.
    assert first["hyperparameters"]["values"] == {
        "weight_ratio": 1.0,
        "learning_rate": search["config"].train.learning_rate,
    }
    assert [row["reference"] for row in result.rows] == [True, False, False]
    # Each execution's objective is kept; the trial's is their mean.
    for row in result.rows:
        assert len(row["objective_runs"]) == 2
        assert row["objective"] == pytest.approx(sum(row["objective_runs"]) / 2)
    # Executions start from different initialisations: they differ.
    assert len(set(result.rows[0]["objective_runs"])) == 2


def test_the_results_table_plot_and_objective(search):
    result, config = search["result"], search["config"]
    assert result.objective == "val_delta_m"  # auto, with baselines cached
    with open(result.files["csv"], newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3
    for row in rows:
        assert float(row["weight_coarse"]) == 1.0
        assert 0.1 <= float(row["weight_fine"]) <= 10.0
        assert 0.001 <= float(row["learning_rate"]) <= 0.01
        assert float(row["objective"]) == pytest.approx(float(row["val_delta_m"]))
        for key in ("val_coarse_accuracy", "val_fine_accuracy", "val_unweighted_loss"):
            assert row[key] != ""
    assert [row["chosen"] for row in result.rows].count(True) == 1
    best = next(row for row in result.rows if row["chosen"])
    assert best["trial"] == result.best_trial == result.selection["chosen"]
    expected = select_trial(result.rows, "min", "one_se")
    assert expected == result.selection and expected["reference"] == "0"
    minimum = min(result.rows, key=lambda row: row["objective"])
    assert minimum["pareto"]  # delta-m's optimum is never dominated
    markdown = result.files["markdown"].read_text()
    assert f"**Decision (one_se):** {result.selection['decision']}" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| trial |")]
    assert table[-1].startswith("| trial | status | weight_coarse | weight_fine")
    saved = json.loads((result.project_dir / "search.json").read_text())
    assert saved["selection"]["chosen"] == result.best_trial
    assert result.files["plot"].read_bytes()[:4] == b"\x89PNG"
    assert result.best_config.tasks[1].weight == pytest.approx(best["weight_fine"])
    assert result.best_config.train.learning_rate == pytest.approx(
        best["learning_rate"]
    )
    assert result.best_config.model == config.model


def test_the_best_model_is_exported_as_a_new_version(search):
    result = search["result"]
    base = search["workdir"] / "saved_models" / "shapes"
    assert result.export_path == base / "1"
    metadata = keras_mtl.read_metadata(result.export_path)
    weights = [task["weight"] for task in metadata["config"]["tasks"]]
    best = next(row for row in result.rows if row["chosen"])
    assert weights == pytest.approx([1.0, best["weight_fine"]])
    # The export is the chosen trial's last execution at its best epoch.
    validation = keras_mtl.evaluate_saved_model(result.export_path, "validation")
    reference = search["baselines"].metrics("validation")
    assert keras_mtl.delta_m(validation, reference, search["config"]) == (
        pytest.approx(best["objective_runs"][-1], rel=1e-4)
    )
    for task in ("coarse", "fine"):
        assert metadata["test_metrics"][task] == pytest.approx(result.report.test[task])


def test_a_finished_search_reruns_without_training_or_exporting(search):
    config = search["config"]
    result = keras_mtl.run_search(config, verbose=0, callbacks=[count_fits()])
    assert CountFits.fits == 0
    assert result.export_path == search["result"].export_path
    assert keras_mtl.list_versions(result.export_path.parent) == [1]
    with pytest.raises(ValueError, match="holds a search with a different config"):
        keras_mtl.run_search(config.replace(["tuning.weight_ratio=[1.0, 2.0]"]))
    # Raising max_trials extends the search by exactly the new trials.
    more = keras_mtl.run_search(
        config.replace(["tuning.max_trials=4"]), verbose=0, callbacks=[count_fits()]
    )
    assert CountFits.fits == 2 and len(more.rows) == 4


def test_baseline_command_gives_the_delta_m_of_a_saved_model(search, capsys):
    config, export_path = search["config"], search["result"].export_path
    sets = [
        arg
        for override in tiny_overrides(search["workdir"], config.data.data_dir)
        for arg in ("--set", override)
    ]
    args = ["baseline", "--preset", "shapes", *sets, "--model", str(export_path)]
    assert cli.main([*args, "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    expected = keras_mtl.delta_m(
        keras_mtl.evaluate_saved_model(export_path, "test"),
        search["baselines"].metrics("test"),
        config,
    )
    assert output["model"]["delta_m"]["mean"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "tuner, trials, epochs, replicas", [("bayesian", 1, 1, 2), ("hyperband", 2, 2, 1)]
)
def test_bayesian_and_hyperband_searches_run(
    tiny_config, tuner, trials, epochs, replicas
):
    config = tiny_config.replace(
        [
            f"tuning.tuner={tuner}",
            f"tuning.max_trials={trials}",
            "tuning.choices.model.width=[4, 8]",
            f"train.epochs={epochs}",
            f"train.replicas={replicas}",
            "tuning.executions_per_trial=1",
            "tuning.selection=best",
        ]
    )
    result = keras_mtl.run_search(config, verbose=0, export=False)
    # Every trial runs under the strategy training would use.
    assert result.tuner.distribution_strategy.num_replicas_in_sync == replicas
    assert result.objective == "val_unweighted_loss"  # auto, no baselines
    assert len(result.rows) == trials and result.export_path is None
    assert {row["model.width"] for row in result.rows} <= {4, 8}
    if tuner == "hyperband":
        # Hyperband's budgets, up to train.epochs.
        assert {row["epochs"] for row in result.rows} <= {1, 2}
    assert result.best_trial in {row["trial"] for row in result.rows}
    # Under every tuner the first trial is the reference (the config's weights).
    assert result.rows[0]["reference"] and result.rows[0]["weight_fine"] == 1.0


def test_tune_command_help_and_refusals(capsys):
    for command in ("tune", "baseline"):
        with pytest.raises(SystemExit) as exit:
            cli.main([command, "--help"])
        assert exit.value.code == 0
        assert f"usage: keras-mtl {command}" in capsys.readouterr().out
    assert cli.main(["tune", "--objective", "val_loss"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "weighted sum of the task losses" in error[0]
    assert cli.main(["tune", "--set", "tuning.choices.data.seed=[1, 2]"]) == 2
    assert "`tuning.choices.data.seed` cannot be tuned" in capsys.readouterr().err


def test_pareto_front_follows_each_metric_direction():
    from keras_mtl import TaskConfig
    from keras_mtl.tuning import pareto_front

    tasks = [
        TaskConfig(name="price", kind="regression"),  # mae: lower is better
        TaskConfig(name="churn", kind="binary"),  # auc: higher is better
    ]
    rows = [
        {"trial": "0", "val_price_mae": 1.0, "val_churn_auc": 0.80},
        {"trial": "1", "val_price_mae": 0.9, "val_churn_auc": 0.70},
        {"trial": "2", "val_price_mae": 1.1, "val_churn_auc": 0.75},  # beaten by 0
        {"trial": "3", "val_price_mae": 0.9, "val_churn_auc": 0.65},  # beaten by 1
        {"trial": "4", "val_price_mae": None, "val_churn_auc": 0.99},  # failed
        {"trial": "5", "val_price_mae": 1.0, "val_churn_auc": 0.80},  # ties 0
        {"trial": "6", "val_price_mae": 1.0, "val_churn_auc": 0.79},  # beaten by 0
    ]
    assert pareto_front(rows, tasks) == ["0", "1", "5"]


def test_the_tradeoff_plot_and_its_missing_extra(tmp_path, monkeypatch):
    from keras_mtl import TaskConfig
    from keras_mtl.tuning.plot import plot_tradeoff

    tasks = [
        TaskConfig(name="price", kind="regression"),
        TaskConfig(name="churn", kind="binary"),
    ]
    rows = [
        {
            "trial": str(i),
            "weight_churn": ratio,
            "val_price_mae": mae,
            "val_churn_auc": auc,
            "chosen": i == 1,
        }
        for i, (ratio, mae, auc) in enumerate(
            [(0.1, 1.0, 0.8), (1.0, 0.9, 0.7), (8.0, 1.1, 0.75)]
        )
    ]
    baselines = {"price": {"mae": 1.05}, "churn": {"auc": 0.72}}
    path = plot_tradeoff(rows, tasks, tmp_path / "tradeoff.png", baselines=baselines)
    assert path.read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "keras-mtl\[plots\]"'):
        plot_tradeoff(rows, tasks, tmp_path / "again.png")


def _trial(trial, runs, reference=False, epochs=None):
    row = {
        "trial": trial,
        "objective": sum(runs) / len(runs),
        "objective_runs": runs,
        "reference": reference,
    }
    if epochs is not None:
        row["epochs"] = epochs
    return row


def test_the_one_standard_error_rule_on_synthetic_trials():
    rows = [
        _trial("0", [1.0, 1.2], reference=True),
        _trial("1", [0.5, 0.7]),  # 0.5 better than the reference (min)
        _trial("2", [1.0, 1.1]),
        {"trial": "3", "objective": None, "objective_runs": []},  # failed
    ]
    chosen = select_trial(rows, "min")
    # Pooled within-trial variance: (0.02 + 0.02 + 0.005) / 3 degrees of freedom.
    assert chosen["pooled_std"] == pytest.approx(0.015**0.5)
    assert chosen["degrees_of_freedom"] == 3
    assert chosen["se_difference"] == pytest.approx(0.015**0.5)  # sqrt(1/2 + 1/2)
    assert chosen["reference_se"] == pytest.approx((0.015 / 2) ** 0.5)
    assert chosen["candidate"] == "1" and chosen["gain"] == pytest.approx(0.5)
    assert chosen["difference"] == pytest.approx(-0.5)
    assert chosen["chosen"] == "1"
    assert "more than one standard error" in chosen["decision"]
    # The same gain under ten times the noise is not enough.
    noisy = [
        _trial("0", [0.1, 2.1], reference=True),
        _trial("1", [-0.4, 1.6]),
        _trial("2", [0.6, 2.6]),
    ]
    kept = select_trial(noisy, "min")
    assert kept["gain"] == pytest.approx(0.5) and kept["se_difference"] > 0.5
    assert kept["chosen"] == "0" and kept["decision"].startswith("Keep the reference")
    assert select_trial(noisy, "min", "best")["chosen"] == "1"
    # For a metric to maximise, the same numbers favour trial 2 over the reference.
    assert select_trial(noisy, "max", "best")["chosen"] == "2"
    assert select_trial(noisy, "max")["chosen"] == "0"
    with pytest.raises(ValueError, match="tuning.selection"):
        select_trial(rows, "min", "first")


def test_the_rule_compares_equal_budgets_and_needs_a_spread():
    rows = [
        _trial("0", [1.0, 1.1], reference=True, epochs=2),
        _trial("1", [0.1, 0.2], epochs=1),  # a shorter Hyperband budget
        _trial("2", [0.9, 1.0], epochs=2),
    ]
    assert select_trial(rows, "min")["candidate"] == "2"
    single = [_trial("0", [1.0], reference=True), _trial("1", [0.1])]
    assert select_trial(single, "min")["chosen"] == "0"
    assert select_trial([_trial("1", [0.3, 0.4])], "min")["chosen"] == "1"


def test_one_se_selection_is_the_default_and_needs_two_executions(tiny_config):
    assert tiny_config.tuning.selection == "one_se"
    assert tiny_config.tuning.executions_per_trial == 2
    with pytest.raises(ValueError, match="tuning.executions_per_trial"):
        tiny_config.replace(["tuning.executions_per_trial=1"])
    best = tiny_config.replace(
        ["tuning.executions_per_trial=1", "tuning.selection=best"]
    )
    assert best.tuning.selection == "best"
    with pytest.raises(ValueError, match="tuning.selection"):
        tiny_config.replace(["tuning.selection=median"])
    with pytest.raises(ValueError, match="must lie in tuning.weight_ratio"):
        check_search_space(tiny_config.replace(["tuning.weight_ratio=[2.0, 5.0]"]))


def test_a_trial_trains_the_heads_first_then_the_whole_model(tiny_config):
    import keras_tuner as kt
    import numpy as np

    from keras_mtl.tuning.hypermodel import MultiTaskHyperModel

    config = tiny_config.replace(
        [
            "train.epochs=2",
            "train.freeze_epochs=1",
            "train.learning_rate=0.002",
            "train.fine_tune_learning_rate=0.0005",
        ]
    )
    datasets = keras_mtl.load_datasets(config)
    hypermodel = MultiTaskHyperModel(config, datasets.features)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    recorder = TrunkRecorder()
    history = hypermodel.fit(
        hp,
        model,
        datasets.train,
        validation_data=datasets.validation,
        epochs=2,
        callbacks=[recorder],
        verbose=0,
    )
    assert history.epoch == [0, 1]
    assert len(history.history["val_unweighted_loss"]) == 2
    frozen, rate0, weights0 = recorder.epochs[0]
    assert not frozen and rate0 == pytest.approx(0.002)
    for before, after in zip(recorder.initial, weights0, strict=True):
        np.testing.assert_array_equal(before, after)
    trains, rate1, weights1 = recorder.epochs[1]
    assert trains and rate1 == pytest.approx(0.0005)
    assert any(
        not np.array_equal(a, b) for a, b in zip(weights0, weights1, strict=True)
    )


def test_a_trial_fits_its_training_batches_with_one_iterator():
    import tensorflow as tf

    batches = tf.data.Dataset.range(10).batch(4)  # 3 batches an epoch
    for args, kwargs in (((batches,), {"epochs": 2}), ((), {"x": batches})):
        (x, *_), fit_kwargs = _one_iterator(args, kwargs)
        assert int(x.cardinality()) == tf.data.INFINITE_CARDINALITY
        assert fit_kwargs["steps_per_epoch"] == 3
        assert [b.numpy().tolist() for b in x.take(4)] == [
            [0, 1, 2, 3],
            [4, 5, 6, 7],
            [8, 9],
            [0, 1, 2, 3],
        ]
    # Left as given: an explicit steps_per_epoch, or arrays.
    assert _one_iterator((batches,), {"steps_per_epoch": 2}) == (
        (batches,),
        {"steps_per_epoch": 2},
    )
    assert _one_iterator(([1, 2],), {}) == (([1, 2],), {})
