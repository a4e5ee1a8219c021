"""Versions and models: polling, hot reload under load, policies, labels, configs."""

import json
import shutil
import threading
import time

import numpy as np
import pytest

from keras_mtl.saved_model import LoadedModel
from keras_mtl.serving import (
    Client,
    ModelServer,
    ModelSpec,
    ServedModelConfig,
    ServingError,
    read_model_config_file,
)
from keras_mtl.serving.registry import ModelRegistry

import serving_helpers as helpers


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Two image models with different weights, as version directories."""
    base = tmp_path_factory.mktemp("sources")
    first = helpers.export_image(base, seed=0)
    second = helpers.export_image(base, seed=1)
    images = helpers.image_batch(2)
    expected = [
        LoadedModel(path).predict({"image": images}) for path in (first, second)
    ]
    assert not np.allclose(expected[0]["fine"], expected[1]["fine"])
    return {"paths": (first, second), "images": images, "expected": expected}


def wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {seconds} s")


def states(client, model="image"):
    return {
        int(s["version"]): s["state"]
        for s in client.status(model)["model_version_status"]
    }


def which_version(answer, expected):
    fine = np.array([row["fine"] for row in answer], np.float32)
    for index, outputs in enumerate(expected):
        if np.array_equal(fine, outputs["fine"]):
            return index + 1
    raise AssertionError(f"an answer matching no version: {answer}")


def test_hot_reload_under_load_loses_no_request(versions, tmp_path):
    model_dir = tmp_path / "image"
    helpers.copy_version(versions["paths"][0], model_dir, 1)
    (model_dir / ".tmp-export-x1y2").mkdir()  # an exporter's temporary directory
    (model_dir / "notes").mkdir()
    body = json.dumps({"instances": versions["images"].tolist()}).encode()
    answers, failures, stop = [], [], threading.Event()

    def load(client):
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            status, payload = client.request("POST", "/v1/models/image:predict", body)
            if status != 200:
                failures.append((status, payload))
            else:
                answers.append((started, json.loads(payload)["predictions"]))

    with ModelServer(
        [ServedModelConfig("image", str(model_dir))],
        rest_api_port=helpers.free_port(),
        grpc_port=0,
        poll_wait_seconds=0.1,
    ) as server:
        client = Client(server.rest_url)
        assert states(client) == {1: "AVAILABLE"}
        threads = [
            threading.Thread(target=load, args=(Client(server.rest_url),))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.3)
            helpers.copy_version(versions["paths"][1], model_dir, 2)
            wait_for(lambda: states(client) == {2: "AVAILABLE", 1: "END"})
            swapped = time.monotonic()
            time.sleep(0.3)
            removed = time.monotonic()
            shutil.rmtree(model_dir / "2")  # back to version 1
            wait_for(lambda: states(client) == {2: "END", 1: "AVAILABLE"})
            restored = time.monotonic()
            time.sleep(0.3)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    assert failures == []
    seen = [(when, which_version(a, versions["expected"])) for when, a in answers]
    assert {version for _, version in seen} == {1, 2}
    assert {version for when, version in seen if swapped < when < removed} == {2}
    assert {version for when, version in seen if when > restored} == {1}
    assert len(answers) > 20


def test_a_request_in_flight_finishes_on_the_version_it_started_on(versions, tmp_path):
    model_dir = tmp_path / "image"
    helpers.copy_version(versions["paths"][0], model_dir, 1)
    registry = ModelRegistry(
        [ServedModelConfig("image", str(model_dir))], poll_wait_seconds=0
    )
    registry.start()
    held = registry.resolve(ModelSpec("image"))
    helpers.copy_version(versions["paths"][1], model_dir, 2)
    registry.poll()
    assert registry.available_versions("image") == [2]
    outputs = held.model.run({"image": versions["images"]})
    np.testing.assert_array_equal(outputs["fine"], versions["expected"][0]["fine"])
    assert registry.resolve(ModelSpec("image")).version == 2


def write_config(path, text):
    path.write_text(text)
    return path


def test_version_policies_labels_and_several_models(versions, tmp_path):
    for version, source in ((1, 0), (2, 1), (3, 1)):
        helpers.copy_version(versions["paths"][source], tmp_path / "a", version)
    for version in (4, 5):
        helpers.copy_version(versions["paths"][0], tmp_path / "b", version)
    config = write_config(
        tmp_path / "models.config",
        f"""
        model_config_list {{
          config {{
            name: "a"
            base_path: "{tmp_path / "a"}"
            model_platform: "tensorflow"
            model_version_policy {{ specific {{ versions: 1 versions: 3 }} }}
            version_labels {{ key: "stable" value: 1 }}
            version_labels {{ key: "canary" value: 3 }}
          }}
          config {{
            name: "b"
            base_path: "{tmp_path / "b"}"
            model_version_policy {{ all {{}} }}
          }}
        }}
        """,
    )
    configs = read_model_config_file(config)
    assert configs == read_model_config_file(config, prefer_installed=False)
    assert configs[0].version_policy == ("specific", (1, 3))
    assert configs[0].version_labels == {"stable": 1, "canary": 3}
    assert configs[1].version_policy == ("all",)
    with ModelServer(
        configs, rest_api_port=helpers.free_port(), grpc_port=0, poll_wait_seconds=0
    ) as server:
        client = Client(server.rest_url)
        assert states(client, "a") == {1: "AVAILABLE", 3: "AVAILABLE"}
        assert states(client, "b") == {4: "AVAILABLE", 5: "AVAILABLE"}
        images = versions["images"].tolist()
        stable = client.predict("a", instances=images, label="stable")
        canary = client.predict("a", instances=images, label="canary")
        latest = client.predict("a", instances=images)
        assert which_version(stable, versions["expected"]) == 1
        assert which_version(canary, versions["expected"]) == 2
        assert latest == canary
        assert client.predict("a", instances=images, version=1) == stable
        with pytest.raises(ServingError, match=r"Specific\(a, 2\)") as caught:
            client.predict("a", instances=images, version=2)
        assert caught.value.http_status == 404
        assert (
            client.status("a", label="canary")["model_version_status"][0]["version"]
            == "3"
        )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("model_config_list { config { name: 'a' } }", "needs a name and a base_path"),
        ("model_config_list { config { nme: 'a' } }", 'has no field named "nme"'),
        ("model_config_list {", "is not a valid"),
        ("", "has no model_config_list"),
        (
            "model_config_list { config { name: 'a' base_path: '/x' "
            "model_version_policy { specific { } } } }",
            "with no `versions` entry",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/x' "
            "model_platform: 'onnx' } }",
            "serves 'tensorflow' SavedModels",
        ),
    ],
)
def test_bad_model_config_files_are_refused_with_the_file_named(
    tmp_path, text, fragment
):
    path = write_config(tmp_path / "bad.config", text)
    for installed in (True, False):
        with pytest.raises(ValueError, match="--model_config_file") as caught:
            read_model_config_file(path, prefer_installed=installed)
        assert fragment in str(caught.value)


def test_a_version_that_fails_to_load_leaves_the_previous_one_serving(
    versions, tmp_path
):
    model_dir = tmp_path / "image"
    helpers.copy_version(versions["paths"][0], model_dir, 1)
    registry = ModelRegistry(
        [ServedModelConfig("image", str(model_dir))],
        poll_wait_seconds=0,
        max_num_load_retries=1,
    )
    registry.start()
    broken = model_dir / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    for _ in range(3):
        registry.poll()  # tried, retried once, then given up
    status = {state.version: state for state in registry.status(ModelSpec("image"))}
    assert status[2].state == "END" and status[2].error_code.name == "UNKNOWN"
    assert "Failed to load" in status[2].error_message
    assert status[2].failed_loads == 2
    assert registry.resolve(ModelSpec("image")).version == 1  # still version 1
    shutil.rmtree(broken)
    helpers.copy_version(versions["paths"][1], model_dir, 3)
    registry.poll()
    assert registry.available_versions("image") == [3]


def test_the_old_serving_model_config_name_still_works_with_a_warning():
    import keras_mtl.serving as serving

    with pytest.warns(DeprecationWarning, match="ServedModelConfig"):
        old = serving.ModelConfig
    assert old is ServedModelConfig
    with pytest.raises(AttributeError, match="NoSuchName"):
        serving.NoSuchName  # noqa: B018


def copy_slowly(source, target, delay):
    """Copies a version in as a slow `cp -r` would: the graph first, then the
    variables `delay` seconds later (in a thread)."""
    target.mkdir()
    for item in source.iterdir():
        if item.name != "variables":
            if item.is_dir():
                shutil.copytree(item, target / item.name)
            else:
                shutil.copy2(item, target / item.name)
    timer = threading.Timer(
        delay, shutil.copytree, (source / "variables", target / "variables")
    )
    timer.start()
    return timer


def test_a_version_copied_in_slowly_loads_once_it_is_complete(
    versions, tmp_path, caplog
):
    model_dir = tmp_path / "image"
    helpers.copy_version(versions["paths"][0], model_dir, 1)
    registry = ModelRegistry(
        [ServedModelConfig("image", str(model_dir))], poll_wait_seconds=0.05
    )
    registry.start()
    try:
        timer = copy_slowly(versions["paths"][1], model_dir / "2", delay=1.0)
        wait_for(lambda: registry.available_versions("image") == [2], seconds=15)
        timer.join()
    finally:
        registry.stop()
    failures = [r for r in caplog.records if "version: 2}" in r.getMessage()]
    assert 1 <= len(failures) <= 3  # each distinct failure logged once
    held = registry.resolve(ModelSpec("image"))
    outputs = held.model.run({"image": versions["images"]})
    np.testing.assert_array_equal(outputs["fine"], versions["expected"][1]["fine"])


def test_failed_loads_back_off_give_up_and_retry_when_files_change():
    from keras_mtl.serving.load_retries import LoadRetries

    now = [0.0]
    retries = LoadRetries(1.0, max_num_load_retries=3, clock=lambda: now[0])
    files = ("saved_model.pb",)
    assert retries.due("v", files)
    waits = []
    for _ in range(4):
        retries.failed("v", files, "no variables")
        start = now[0]
        while not retries.due("v", files) and now[0] < start + 100:
            now[0] += 0.5
        waits.append(now[0] - start)
    assert waits[:3] == [1.0, 2.0, 4.0] and waits[3] == 100.0  # then given up
    assert retries.due("v", files + ("variables/variables.index",))


def test_removing_every_version_unloads_the_last_one(versions, tmp_path):
    model_dir = tmp_path / "image"
    helpers.copy_version(versions["paths"][0], model_dir, 1)
    registry = ModelRegistry(
        [ServedModelConfig("image", str(model_dir))], poll_wait_seconds=0
    )
    registry.start()
    assert registry.resolve(ModelSpec("image")).version == 1
    shutil.rmtree(model_dir / "1")
    registry.poll()
    assert registry.available_versions("image") == []
    with pytest.raises(ServingError) as caught:
        registry.resolve(ModelSpec("image"))
    assert caught.value.code.name == "NOT_FOUND"
    assert caught.value.message == "Servable not found for request: Latest(image)"
    assert [(s.version, s.state) for s in registry.status(ModelSpec("image"))] == [
        (1, "END")
    ]
    helpers.copy_version(versions["paths"][1], model_dir, 3)
    registry.poll()
    assert registry.available_versions("image") == [3]
