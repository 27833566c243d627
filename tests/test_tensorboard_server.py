"""A real TensorBoard server over a run the test makes: its HTTP data API serves the run's
charts."""

import io
import json
import time
import urllib.request

import pytest

from gd_torch import train
from gd_torch.tools.screenshots import free_port, start_tensorboard
from tests.configs import split

STARTUP_SECONDS = (
    120  # TensorBoard imports slowly on a busy machine; the wait is bounded all the same
)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.fixture
def server(tmp_path, fake_mnist_root):
    """(base URL, run name) of a tensorboard serving a 2-epoch run on synthetic digits; always
    stopped."""
    config = split(
        data_root=str(fake_mnist_root),
        download=False,
        epochs=2,
        image_every=1,
        log_every=20,
        runs_dir=str(tmp_path / "runs"),
    )
    run_dir = train(*config, out=io.StringIO()).run_dir
    port = free_port()
    log = tmp_path / "tensorboard.log"
    process = start_tensorboard(run_dir.parent, port, log.open("wb"), "--reload_interval", "1")
    try:
        yield f"http://127.0.0.1:{port}", run_dir.name, process, log
    finally:
        process.kill()
        process.wait(timeout=30)


def wait_for_tags(base: str, plugin: str, run: str, process, log) -> dict:
    """The tags the plugin serves for ``run``, once the server has loaded them."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"tensorboard exited with {process.returncode}: "
                f"{log.read_text(errors='replace')[-2000:]}"
            )
        try:
            tags = get_json(f"{base}/data/plugin/{plugin}/tags").get(run, {})
            if tags:
                return tags
        except OSError:  # not listening yet
            pass
        time.sleep(0.5)
    pytest.fail(f"tensorboard served no {plugin} tags for {run} within {STARTUP_SECONDS} s")


def test_tensorboard_serves_scalars_histograms_and_images(server):
    base, run, process, log = server
    scalars = wait_for_tags(base, "scalars", run, process, log)
    assert {
        "batch/train_cost",
        "batch/gradient_norm",
        "epoch/test_accuracy",
        "epoch/train_cost",
    } <= set(scalars)
    histograms = wait_for_tags(base, "histograms", run, process, log)
    assert {"layer1/weights", "layer3/biases", "layer1/weight_gradients"} <= set(histograms)
    images = wait_for_tags(base, "images", run, process, log)
    assert {"images/first_layer_weights", "images/confusion_matrix"} <= set(images)
    assert images["images/confusion_matrix"]["samples"] == 1
    points = get_json(f"{base}/data/plugin/scalars/scalars?run={run}&tag=epoch/test_accuracy")
    epoch_ends = [
        0,
        60,
        120,
    ]  # x is the SGD step: 600 synthetic digits in batches of 10 make 60 steps an epoch; step 0
    # is the untrained network
    assert [step for _, step, _ in points] == epoch_ends and all(
        0 <= accuracy <= 1 for _, _, accuracy in points
    )
    steps = get_json(
        f"{base}/data/plugin/images/images?run={run}&tag=images/first_layer_weights&sample=0"
    )
    assert [entry["step"] for entry in steps] == epoch_ends


def test_tensorboard_serves_hparams_custom_scalars_and_projector(server):
    base, run, process, log = server
    wait_for_tags(base, "scalars", run, process, log)
    request = urllib.request.Request(
        f"{base}/data/plugin/hparams/experiment",
        data=b'{"experimentName": ""}',
        headers={"Content-Type": "application/json"},  # else the body is form data
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        experiment = json.load(response)
    # a single run marks what its name shows: --epochs 2 (not the default), η and the seed
    differing = [info["name"] for info in experiment["hparamInfos"] if info.get("differs")]
    assert differing == ["epochs", "learning_rate", "seed"]
    layout = get_json(f"{base}/data/plugin/custom_scalars/layout")
    assert len(layout["category"][0]["chart"]) == 3
    deadline = time.monotonic() + STARTUP_SECONDS  # the projector looks for its files in a thread
    while run not in get_json(f"{base}/data/plugin/projector/runs"):
        assert time.monotonic() < deadline, "the projector found no embedding"
        time.sleep(0.5)
