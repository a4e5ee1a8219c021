"""benchmarks/gpu_check.py in its quick mode, on the 2 logical CPUs of the tests.

The smoke run uses the small `cnn` trunk; the backbone run (`make gpu-check`)
costs about 25 s of CPU time, too much for the suite.
"""

import json
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402


def test_gpu_check_quick_compares_1_and_2_replicas(tmp_path):
    output = tmp_path / "gpu.json"
    report = gpu_check.main(["--quick", "--trunk", "cnn", "--output", str(output)])
    assert json.loads(output.read_text()) == json.loads(json.dumps(report))
    assert report["passed"] and report["device_kind"] == "cpu"
    assert [run["replicas"] for run in report["runs"]] == [1, 2]
    assert set(report["loss_relative_differences"]) == {"coarse", "fine"}
    assert max(report["loss_relative_differences"].values()) < 1e-4
    assert report["images_per_second"]["2"] > 0 and report["scaling_ratio"] > 0
    # the trained model, exported and called as keras-mtl serve calls it
    serving = report["serving"]
    assert serving["executor"] == "single-threaded"
    assert serving["max_abs_difference_from_public_call"] == 0.0
    assert serving["run_ms"] > 0 and serving["public_call_ms"] > 0


def test_replica_invariance_check_can_fail():
    one = {"train_losses": {"a": [1.0, 0.9]}, "eval_losses": {"a": 0.8}}
    many = {"train_losses": {"a": [1.0, 0.9]}, "eval_losses": {"a": 0.81}}
    differences, passed = gpu_check.compare(one, many, tolerance=1e-3)
    assert not passed and abs(differences["a"] - 0.0125) < 1e-9
    assert gpu_check.compare(one, one, tolerance=1e-3) == ({"a": 0.0}, True)
