"""The `keras-mtl` console script, run as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_mtl import cli

from conftest import run_dir_held_by_another_process, tiny_overrides

KERAS_MTL = str(Path(sys.executable).parent / "keras-mtl")


def run(*args, cwd=None):
    return subprocess.run(
        [KERAS_MTL, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )


def own_lines(stderr):
    """What keras-mtl printed, without TensorFlow's start-up chatter."""
    return [line for line in stderr.splitlines() if line.startswith("keras-mtl")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, shapes_data_dir):
    """`keras-mtl train` on the tiny config; returns (stdout, export dir, workdir)."""
    workdir = tmp_path_factory.mktemp("cli")
    overrides = [
        *tiny_overrides(workdir, shapes_data_dir),
        "weighting.diagnostics=true",
    ]
    sets = [arg for override in overrides for arg in ("--set", override)]
    result = run("train", "--preset", "shapes", *sets, "--verbose", "2", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, Path(result.stdout.strip().splitlines()[-1]), workdir


def test_help_for_every_command(capsys):
    result = run("--help")
    assert result.returncode == 0 and "usage: keras-mtl" in result.stdout
    for command in ("train", "evaluate", "predict", "serve", "config", "compare"):
        with pytest.raises(SystemExit) as exit:
            cli.main([command, "--help"])
        assert exit.value.code == 0
        assert f"usage: keras-mtl {command}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--preset", "nope"], "Unknown preset 'nope'"),
        (["train", "--set", "train.epochs=0"], "`train.epochs` must be >= 1"),
        (["train", "--set", "train.epoch=3"], "Unknown config key 'train.epoch'"),
        (["train", "--replicas", "two"], "argument --replicas: invalid int value"),
        (
            ["train", "--preset", "shapes", "--config", "x.toml"],
            "not allowed with argument",
        ),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (
            ["predict", "--model", "/nonexistent", "--input", "x.json"],
            "No SavedModel at /nonexistent",
        ),
        (["compare", "--methods", "static,sgd"], "--methods: expected comma-separated"),
        (["compare", "--seeds", "0"], "--seeds: expected how many seeds"),
    ],
)
def test_bad_arguments_get_one_line_and_status_2(args, fragment, capsys):
    try:  # In-process: the console script calls the same `main`.
        status = cli.main(args)
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    stderr = capsys.readouterr().err
    assert status == 2
    lines = own_lines(stderr)
    assert len(lines) == 1, stderr
    assert fragment in lines[0]
    assert "Traceback" not in stderr


def test_a_bad_argument_through_the_console_script():
    result = run("train", "--set", "model.trunk=resnet")
    assert result.returncode == 2
    (line,) = own_lines(result.stderr)
    assert line.startswith("keras-mtl train: error: ")
    assert line.endswith(
        "`model.trunk` must be one of ['mlp', 'cnn', 'mmoe', 'ple', 'keras.applications.<Name>', 'keras_hub:<preset>']. Received: model.trunk='resnet'"
    )


def test_train_prints_the_export_directory_last(exported):
    result, path, workdir = exported
    assert path == workdir / "saved_models" / "shapes" / "1"
    assert (path / "saved_model.pb").exists()
    assert "Test metrics" in result.stderr
    assert "fine_loss" in result.stdout + result.stderr  # the Keras progress lines


def test_evaluate_prints_per_task_metrics(exported):
    _, path, _ = exported
    result = run("evaluate", "--model", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(result.stdout)
    assert set(metrics) == {"coarse", "fine"}
    assert set(metrics["fine"]) == {"loss", "accuracy"}
    recorded = json.loads((path / "assets.extra" / "keras_mtl.json").read_text())[
        "test_metrics"
    ]
    for task in ("coarse", "fine"):
        assert metrics[task]["accuracy"] == pytest.approx(
            recorded[task]["accuracy"], abs=1e-6
        )


def test_predict_json_rows_and_npy(exported, tmp_path):
    _, path, _ = exported
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    rows = tmp_path / "rows.json"
    rows.write_text(
        json.dumps({"instances": [{"image": image.tolist()} for image in images]})
    )
    array = tmp_path / "images.npy"
    np.save(array, images)
    answers = []
    for source in (rows, array):
        result = run("predict", "--model", str(path.parent), "--input", str(source))
        assert result.returncode == 0, result.stderr[-2000:]
        answers.append(json.loads(result.stdout)["predictions"])
    assert len(answers[0]) == 3 and set(answers[0][0]) == {"coarse", "fine"}
    assert len(answers[0][0]["fine"]) == 12
    assert sum(answers[0][0]["fine"]) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(
        answers[0][2]["coarse"], answers[1][2]["coarse"], atol=1e-6
    )


def test_predict_reports_a_wrong_input_name(exported, tmp_path):
    _, path, _ = exported
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"picture": [[[0, 0, 0]]]}]))
    result = run("predict", "--model", str(path), "--input", str(rows))
    assert result.returncode == 2
    assert "does not have named input: picture" in result.stderr


def test_config_prints_resolved_toml(tmp_path):
    result = run("config", "--preset", "adult", "--set", "tasks.income.weight=0.5")
    assert result.returncode == 0
    path = tmp_path / "adult.toml"
    path.write_text(result.stdout)
    import keras_mtl

    assert keras_mtl.load_config(str(path)).tasks[1].weight == 0.5


def test_diagnose_draws_a_run_and_a_keras_file(exported, capsys, tmp_path):
    _, version_dir, workdir = exported
    run_dir = workdir / "runs" / "shapes"
    assert cli.main(["diagnose", "--run-dir", str(run_dir)]) == 0
    paths = [Path(line) for line in capsys.readouterr().out.split()]
    assert [path.name for path in paths] == [
        "gradient_flow.png",
        "gradient_flow.svg",
        "gradient_history.png",
        "gradient_history.svg",
    ]
    assert all(path.parent == run_dir / "diagnostics" for path in paths)
    assert "after epoch 1" in paths[1].read_text()
    checkpoint = run_dir / "checkpoints" / "best.keras"
    args = ["diagnose", "--model", str(checkpoint), "--output", str(tmp_path)]
    assert cli.main(args) == 0
    paths = [Path(line) for line in capsys.readouterr().out.split()]
    assert [path.name for path in paths] == ["gradient_flow.png", "gradient_flow.svg"]
    assert "(best.keras), one validation batch" in paths[1].read_text()
    assert cli.main(["diagnose", "--model", str(version_dir)]) == 2
    assert "expected a .keras file" in capsys.readouterr().err


def test_train_uses_the_configured_weighting(shapes_data_dir, tmp_path, capsys):
    sets = [
        arg
        for override in [
            *tiny_overrides(tmp_path, shapes_data_dir),
            "weighting.method=uncertainty",
            "weighting.diagnostics=true",
        ]
        for arg in ("--set", override)
    ]
    args = ["train", "--preset", "shapes", *sets, "--no-export", "--verbose", "0"]
    assert cli.main(args) == 0, capsys.readouterr().err
    history = json.loads((tmp_path / "runs" / "shapes" / "history.json").read_text())
    weights = history["coarse_weight"] + history["fine_weight"]
    assert all(0.3 < weight < 0.7 for weight in weights)  # 0.5 exp(-s), moving
    assert weights != [0.5, 0.5]
    assert len(history["grad_cosine_trunk"]) == 1


def _sets(overrides):
    return [arg for override in overrides for arg in ("--set", override)]


@pytest.mark.parametrize(
    "args",
    [
        ["config", "--set", "train.epochs=x"],
        ["train", "--set", "train.epochs=x"],
        ["baseline", "--set", "train.epochs=x"],
        ["train", "--config", "."],
        ["diagnose", "--run-dir", "nowhere"],
        ["evaluate", "--model", "nowhere"],
    ],
)
def test_a_usage_error_prints_one_line_before_tensorflow_starts(args, tmp_path):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    # Not even TensorFlow's start-up lines: it is not imported yet.
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"keras-mtl {args[0]}: error: ")


def test_preset_and_config_are_never_taken_for_each_other(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shapes").mkdir()  # as in saved_models/ or runs/
    assert cli.main(["config", "--preset", "shapes"]) == 0
    assert cli.main(["config"]) == 0
    capsys.readouterr()
    assert cli.main(["config", "--config", "shapes"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("keras-mtl config: error: --config shapes: is a directory")
    assert "--preset NAME" in line
    (tmp_path / "run.toml").write_text("")
    assert cli.main(["config", "--preset", "run.toml"]) == 2
    assert "Unknown preset 'run.toml'" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["export.base_dir", "train.run_dir"])
def test_an_unwritable_output_directory_fails_before_training(
    key, shapes_data_dir, tmp_path, capsys
):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    overrides = [*tiny_overrides(tmp_path, shapes_data_dir), f"{key}={blocker}"]
    assert cli.main(["train", *_sets(overrides), "--verbose", "0"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"`{key}` must be a directory that keras-mtl can write" in line
    assert f"{blocker} is a file where a directory should be" in line
    assert not (tmp_path / "runs").exists()  # no epoch ran


def test_a_second_train_in_a_run_directory_exits_2_naming_the_holder(
    shapes_data_dir, tmp_path, capsys
):
    args = [
        "train",
        *_sets(tiny_overrides(tmp_path, shapes_data_dir)),
        "--verbose",
        "0",
    ]
    with run_dir_held_by_another_process(tmp_path / "runs" / "shapes") as holder:
        assert cli.main(args) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"is in use by another keras-mtl train (pid {holder.pid}" in line


def test_compare_trains_on_the_protocol_and_writes_table_json_and_plot(
    tmp_path, monkeypatch, capsys
):
    import keras_mtl
    from keras_mtl.evaluation import comparison as comparison_lib

    calls = {}

    def fake_compare(config, methods, **kwargs):
        calls.update(config=config, methods=methods, **kwargs)
        tasks = config.tasks
        metrics = {"loss": 1.0, "accuracy": 0.5}
        records = {
            task.name: {s: {"validation": None, "test": metrics} for s in (0, 1)}
            for task in tasks
        }
        runs = {
            method: [
                comparison_lib.MethodRun(
                    method,
                    seed,
                    None,
                    type(
                        "History",
                        (),
                        {
                            "history": {f"{t.name}_weight": [1.0] for t in tasks},
                            "epoch": [0],
                        },
                    )(),
                    keras_mtl.EvaluationReport(
                        None, {t.name: dict(metrics) for t in tasks}, list(tasks)
                    ),
                    1.0,
                    None,
                )
                for seed in (0, 1)
            ]
            for method in methods
        }
        return comparison_lib.WeightingComparison(
            tasks, runs, keras_mtl.Baselines(tasks, records)
        )

    monkeypatch.setattr(comparison_lib, "compare_weightings", fake_compare)
    status = cli.main(
        [
            "compare",
            "--methods",
            "static,famo",
            "--seeds",
            "2",
            "--set",
            "train.lr_schedule=cosine",
            "--set",
            f"train.run_dir={tmp_path / 'runs'}",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert status == 0
    config = calls["config"]
    assert calls["methods"] == ["static", "famo"] and calls["seeds"] == [0, 1]
    assert calls["resample_split"] is True
    assert config.train.monitor == "val_unweighted_loss"
    assert config.train.early_stopping_patience == 3
    assert config.train.lr_schedule == "cosine"  # --set wins over the protocol
    output = capsys.readouterr().out
    assert "| famo |" in output and "delta-m - static" in output
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert written == [
        "comparison.json",
        "comparison.md",
        "comparison.png",
        "comparison.svg",
    ]
