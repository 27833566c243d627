"""The dashboards as TensorBoard itself reads them: its data ingester and every plugin's HTTP
routes, served in this process (TensorBoard's own WSGI app), over a sweep of 2 learning rates x
2 seeds and a single run on synthetic digits."""

import dataclasses
import io
import json
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard import default, program
from tensorboard.backend import application
from tensorboard.backend.event_processing.data_ingester import LocalDataIngester
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter
from werkzeug.test import Client

from gd_torch import train
from gd_torch.analysis.report import analyze
from gd_torch.core.data import Split
from gd_torch.core.evaluate import evaluate
from gd_torch.core.loop import seeded_generators
from gd_torch.core.model import Network
from gd_torch.core.naming import group_labels, label, single_run_names
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.dashboard import projector
from gd_torch.dashboard.cards import weight_tiles
from gd_torch.dashboard.projector import sprite as sprite_sheet
from gd_torch.dashboard.tensorboard import (
    GRADIENT_SAMPLE,
    MOST_HISTOGRAMS,
    TrainingLog,
    histograms_due,
    sample_gradients,
    view_command,
)
from gd_torch.tools.sweep import sweep
from tests.configs import split
from tests.events import images, scalars
from tests.fakes import synthetic_mnist, write_mnist_files

SEEDS, RATES = (3, 4), (1.0, 2.5)
TRIALS = {"lr1_s3", "lr1_s4", "lr2.5_s3", "lr2.5_s4"}
STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def tensorboard(logdir) -> Client:
    """TensorBoard's own app over ``logdir``, with every plugin, loaded once before it serves."""
    board = program.TensorBoard(plugins=default.get_plugins())
    board.configure(
        argv=[None, "--logdir", str(logdir), "--reload_task", "blocking", "--reload_interval", "0"]
    )
    ingester = LocalDataIngester(board.flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(
        board.flags,
        board.plugin_loaders,
        ingester.data_provider,
        board.assets_zip_provider,
        ingester.deprecated_multiplexer,
    )
    return Client(app)


def get(client: Client, route: str, **query):
    response = client.get(f"/data/plugin/{route}", query_string=query)
    assert response.status_code == 200, (route, response.get_data(as_text=True)[:500])
    is_json = response.mimetype == "application/json"
    return json.loads(response.get_data()) if is_json else response.get_data()


def post(client: Client, route: str, body: dict):
    response = client.post(f"/data/plugin/{route}", data=json.dumps(body))
    assert response.status_code == 200, (route, response.get_data(as_text=True)[:500])
    return json.loads(response.get_data())


@pytest.fixture(scope="module")
def data():
    return synthetic_mnist()  # 600 training, 200 test digits


@pytest.fixture(scope="module")
def swept(tmp_path_factory, data):
    runs = tmp_path_factory.mktemp("runs")
    options = RunOptions(runs_dir=str(runs), image_every=1, log_every=20, data_root=str(runs))
    result = sweep(TrainingSettings(epochs=2), options, SEEDS, RATES, data=data, out=io.StringIO())
    return result, tensorboard(result.sweep_dir)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """A run on its own from MNIST files (so that analyze can read them again), with a
    validation set and a boolean setting changed."""
    root = write_mnist_files(tmp_path_factory.mktemp("data"))
    settings, options = split(
        epochs=2,
        validation_size=100,
        momentum=0.5,
        nesterov=True,
        data_root=str(root),
        download=False,
        runs_dir=str(tmp_path_factory.mktemp("single")),
    )
    result = train(settings, options, out=io.StringIO())
    return result, settings


def test_hparams_shows_learning_rate_and_seed_first_as_what_differs(swept):
    _, client = swept
    experiment = post(client, "hparams/experiment", {"experimentName": ""})
    infos = experiment["hparamInfos"]
    assert [info["name"] for info in infos[:2]] == ["learning_rate", "seed"]
    assert [info.get("differs", False) for info in infos] == [True, True] + [False] * (
        len(infos) - 2
    )
    names = {info["name"] for info in infos}
    assert names == set(TrainingSettings.__dataclass_fields__)  # the settings, no run option
    types = {info["name"]: info["type"] for info in infos}
    assert types["nesterov"] == "DATA_TYPE_BOOL" and types["hidden_sizes"] == "DATA_TYPE_STRING"
    assert types["learning_rate"] == "DATA_TYPE_FLOAT64"
    metrics = [info["name"]["tag"] for info in experiment["metricInfos"]]
    assert metrics == ["epoch/test_accuracy", "epoch/best_test_accuracy", "epoch/test_cost"]


def test_hparams_trials_are_named_by_what_differs_with_their_final_metrics(swept):
    result, client = swept
    groups = post(
        client,
        "hparams/session_groups",
        {"experimentName": "", "allowedStatuses": STATUSES, "startIndex": 0, "sliceSize": 100},
    )["sessionGroups"]
    assert {group["name"] for group in groups} == TRIALS
    finals = {
        label(settings, ["learning_rate", "seed"]): final
        for settings, final in zip(result.settings, result.finals)
    }
    for group in groups:
        assert group["hparams"]["nesterov"] is False  # a boolean, not 0.0000
        assert group["hparams"]["hidden_sizes"] == "16-16"
        (session,) = group["sessions"]
        assert session["status"] == "STATUS_SUCCESS"
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert values["epoch/test_accuracy"] == pytest.approx(
            finals[group["name"]]["test_accuracy"]
        )
        assert values["epoch/best_test_accuracy"] == pytest.approx(
            finals[group["name"]]["best_test_accuracy"]
        )


def test_a_single_run_defines_its_own_experiment_marking_what_its_name_shows(single):
    result, settings = single
    client = tensorboard(result.run_dir)
    experiment = post(client, "hparams/experiment", {"experimentName": ""})
    differing = [info["name"] for info in experiment["hparamInfos"] if info.get("differs")]
    assert differing == sorted(single_run_names(settings))
    assert set(differing) == {"momentum", "nesterov", "validation_size", "epochs"} | {
        "learning_rate",
        "seed",
    }
    metrics = [info["name"]["tag"] for info in experiment["metricInfos"]]
    assert metrics[-1] == "epoch/validation_accuracy"
    (group,) = post(
        client,
        "hparams/session_groups",
        {"experimentName": "", "allowedStatuses": STATUSES, "startIndex": 0, "sliceSize": 10},
    )["sessionGroups"]
    assert group["name"] == label(settings, single_run_names(settings))
    assert group["hparams"]["nesterov"] is True
    values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
    assert values["epoch/validation_accuracy"] == pytest.approx(result.final["validation_accuracy"])


def test_the_custom_scalars_layout_puts_train_and_test_on_one_chart(swept):
    _, client = swept
    layout = get(client, "custom_scalars/layout")
    charts = {
        chart["title"]: chart["multiline"]["tag"]
        for category in layout["category"]
        for chart in category["chart"]
    }
    assert len(charts) == 3  # one layout, though every run writes it

    def matched(patterns, tags):
        return {tag for tag in tags for pattern in patterns if re.search(pattern, tag)}

    tags = get(client, "scalars/tags")["lr1_s3"]
    cost, accuracy, step = charts.values()
    assert matched(cost, tags) == {"epoch/train_cost", "epoch/test_cost"}
    assert matched(accuracy, tags) == {"epoch/train_accuracy", "epoch/test_accuracy"}
    assert matched(step, tags) == {"batch/learning_rate", "batch/gradient_norm"}
    served = get(client, "custom_scalars/scalars", run="lr1_s3", tag=cost[0])
    assert served["regex_valid"]
    assert set(served["tag_to_events"]) == {"epoch/train_cost", "epoch/test_cost"}


def test_step_zero_holds_the_untrained_network(swept, data):
    result, client = swept
    for settings, name in zip(result.settings, group_labels(result.settings)):
        untrained = Network(
            settings.layer_sizes, settings.init, seeded_generators(settings.seed)[0]
        )
        points = get(client, "scalars/scalars", run=name, tag="epoch/test_accuracy")
        assert [step for _, step, _ in points] == [0, 60, 120]
        assert points[0][2] == pytest.approx(evaluate(untrained, data.test, "quadratic").accuracy)
        for tag in ("images/first_layer_weights", "images/confusion_matrix"):
            images = get(client, "images/images", run=name, tag=tag, sample=0)
            assert [image["step"] for image in images] == [0, 60, 120]
        (first, *_) = get(client, "histograms/histograms", run=name, tag="layer1/weight_gradients")
        _, step, buckets = first
        # the gradient over the fixed sample (all 600 digits here), not the last mini-batch
        sample = data.train[:GRADIENT_SAMPLE]
        nabla_w = sample_gradients(untrained, sample, "quadratic")[0][0]
        assert step == 0 and sum(count for _, _, count in buckets) == nabla_w.numel()
        assert buckets[0][0] == pytest.approx(nabla_w.min().item(), rel=1e-5)
        assert buckets[-1][1] == pytest.approx(nabla_w.max().item(), rel=1e-5)


def test_the_projector_has_its_config_sprite_and_labels(swept, data):
    result, client = swept
    name = "lr2.5_s4"
    assert set(get(client, "projector/runs")) == TRIALS
    (embedding,) = get(client, "projector/info", run=name)["embeddings"]
    assert embedding["sprite"]["singleImageDim"] == [28, 28]
    title = embedding["tensorName"]
    sprite = Image.open(io.BytesIO(get(client, "projector/sprite_image", run=name, name=title)))
    assert sprite.size == (15 * 28, 15 * 28)  # 200 test digits in a 15 x 15 sheet
    thumbnail = np.asarray(sprite.convert("L"))[:28, :28]
    expected = 255 * (1 - data.test.images[0].reshape(28, 28).numpy())
    assert np.abs(thumbnail - expected).max() <= 1  # the first digit, dark on white
    tensor = np.frombuffer(get(client, "projector/tensor", run=name, name=title), np.float32)
    network = result.networks[
        result.settings.index(TrainingSettings(epochs=2, seed=4, learning_rate=2.5))
    ]
    hidden = torch.sigmoid(network.layers[1](torch.sigmoid(network.layers[0](data.test.images))))
    np.testing.assert_allclose(tensor.reshape(200, 16), hidden.detach().numpy(), rtol=1e-5)
    rows = get(client, "projector/metadata", run=name, name=title).decode().splitlines()
    assert rows[0] == "label\tpredicted\tright"
    assert [int(row.split("\t")[0]) for row in rows[1:]] == data.test.labels.tolist()


def test_the_same_digits_sprite_is_encoded_once_and_written_for_every_run(
    tmp_path, data, monkeypatch
):
    drawn = []
    monkeypatch.setattr(projector, "_encoded", [])  # none from the tests before
    monkeypatch.setattr(projector, "sprite", lambda images: drawn.append(1) or sprite_sheet(images))
    network = Network()
    first, second = (
        projector.embed(tmp_path / run, "end", "end", network, data.test) for run in ("a", "b")
    )
    sprites = [(tmp_path / run / "projector" / "end" / "sprite.png").read_bytes() for run in "ab"]
    assert first == second and sprites[0] == sprites[1] and len(drawn) == 1
    other = Split(data.test.images.flip(0), data.test.labels.flip(0))
    projector.embed(tmp_path / "c", "end", "end", network, other)
    assert len(drawn) == 2  # other digits: their own sprite
    assert (tmp_path / "c" / "projector" / "end" / "sprite.png").read_bytes() != sprites[0]
    projector.embed(
        tmp_path / "d", "end", "end", network, Split(other.images.clone(), other.labels)
    )
    assert len(drawn) == 2  # the same digits in another tensor: the same sprite
    other.images[0, 300] = 1 - other.images[0, 300]  # changed in place
    projector.embed(tmp_path / "e", "end", "end", network, other)
    assert len(drawn) == 3
    assert (tmp_path / "e" / "projector" / "end" / "sprite.png").read_bytes() != (
        tmp_path / "c" / "projector" / "end" / "sprite.png"
    ).read_bytes()


def test_the_text_tab_holds_the_settings_options_and_versions(swept, single):
    _, client = swept
    # torch.utils.tensorboard's add_text puts each text under <tag>/text_summary
    assert set(get(client, "text/tags")["."]) == {
        "run/training_settings/text_summary",
        "run/run_options/text_summary",
        "run/versions/text_summary",
        "run/how_to_read/text_summary",
    }
    (settings_text,) = get(client, "text/text", run=".", tag="run/training_settings/text_summary")
    html = settings_text["text"]
    assert "<table>" in html and "--learning-rate" in html and "1.0, 2.5" in html
    assert "3, 4" in html and "--nesterov" in html
    (versions,) = get(client, "text/text", run=".", tag="run/versions/text_summary")
    assert torch.__version__ in versions["text"]
    result, _ = single
    (options,) = get(
        tensorboard(result.run_dir), "text/text", run=".", tag="run/run_options/text_summary"
    )
    assert "--image-every" in options["text"] and "--log-every" in options["text"]


def test_pr_curves_per_digit_and_the_graph_of_the_network(swept):
    _, client = swept
    tags = get(client, "pr_curves/tags")
    assert set(tags) == TRIALS
    assert set(tags["lr1_s4"]) == {f"pr_curves/digit_{d}" for d in range(10)}
    curves = get(client, "pr_curves/pr_curves", run="lr1_s4", tag="pr_curves/digit_7")
    (entry,) = curves["lr1_s4"]
    assert entry["step"] == 120 and 0 <= min(entry["precision"]) <= max(entry["precision"]) <= 1
    assert "." in get(client, "graphs/info")
    graph = get(client, "graphs/graph", run=".").decode()
    assert "Network" in graph and "aten::sigmoid" in graph


def test_analyze_adds_its_summary_and_a_projector_of_the_checkpoint(single):
    result, _ = single
    analyze(result.run_dir / "best.pt", top=2, out=io.StringIO(), projector=projector.embed)
    client = tensorboard(result.run_dir)
    (summary,) = get(client, "text/text", run=".", tag="analysis/summary/text_summary")
    assert "more sensitive to W" in summary["text"] and "<pre><code>" in summary["text"]
    titles = [e["tensorName"] for e in get(client, "projector/info", run=".")["embeddings"]]
    assert len(titles) == 2 and "end of training" in titles[0] and "best.pt" in titles[1]


def test_names_lead_with_what_differs_and_sort_by_seed():
    group = [TrainingSettings(seed=seed, learning_rate=0.5) for seed in (2, 10, 0)]
    assert group_labels(group) == ["s02", "s10", "s00"]
    assert sorted(group_labels(group)) == ["s00", "s02", "s10"]
    changed = TrainingSettings(batch_size=100, hidden_sizes=(30,), seed=2, nesterov=False)
    assert label(changed, single_run_names(changed)) == "h30_lr3_b100_s2"


def test_every_training_setting_changed_alone_gives_its_own_name():
    """A setting added to TrainingSettings must get a tag: a run that changes it is named by it,
    and no two such runs share a name (Nesterov needs a momentum beside it)."""
    values = dict(
        hidden_sizes=(30,), init="pytorch", cost="cross-entropy", engine="autograd",
        learning_rate=0.5, momentum=0.9, nesterov=True, weight_decay=1e-4,
        weight_decay_on="weights", lr_schedule="constant", epochs=2, batch_size=100, seed=3,
        validation_size=1000, dtype="float64", train_size=100, label_noise=0.5, data_seed=4,
    )  # fmt: skip
    assert set(values) == {field.name for field in dataclasses.fields(TrainingSettings)}
    runs = [
        TrainingSettings(**{name: value}, **({"momentum": 0.9} if name == "nesterov" else {}))
        for name, value in values.items()
    ]
    names = [label(settings, single_run_names(settings)) for settings in runs]
    assert len(set(names)) == len(names)


def test_histograms_stay_within_what_tensorboard_shows():
    for epochs in (1, 3, 50, 51, 60, 250):
        due = [epoch for epoch in range(epochs + 1) if histograms_due(epoch, epochs)]
        assert due[0] == 0 and due[-1] == epochs and len(due) <= MOST_HISTOGRAMS
    assert sum(histograms_due(epoch, 50) for epoch in range(51)) == 51  # every epoch up to 50


def test_the_printed_tensorboard_command_asks_for_every_point_logged(tmp_path):
    default = RunOptions()
    assert view_command(tmp_path, 360_000, 60, default) == (
        f"tensorboard --logdir {tmp_path} --samples_per_plugin scalars=3600"
    )
    every_epoch = RunOptions(image_every=1, log_every=1000)
    assert view_command(tmp_path, 360_000, 60, every_epoch) == (
        f"tensorboard --logdir {tmp_path} --samples_per_plugin images=61"
    )
    assert view_command(tmp_path, 600, 1, default) == f"tensorboard --logdir {tmp_path}"


def test_gradient_sample_leaves_the_networks_gradients_alone(data):
    network = Network()
    before = [p.grad for p in network.parameters()]
    gradients = sample_gradients(
        network, Split(data.train.images[:10], data.train.labels[:10]), "quadratic"
    )
    assert [p.grad for p in network.parameters()] == before
    assert [w.shape for w, _ in gradients] == [layer.weight.shape for layer in network.layers]


def test_the_graph_is_the_one_add_graph_traces_from_the_network_itself(tmp_path):
    network, example = Network(), torch.rand(1, 784)
    log = TrainingLog(tmp_path / "ours")
    log.graph(network, example)
    log.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        writer = SummaryWriter(str(tmp_path / "direct"))
        writer.add_graph(network, example)  # torch.jit.trace with its check
        writer.close()

    def graph_def(run_dir):
        events = EventAccumulator(str(run_dir))
        events.Reload()
        return events.Graph()

    ours = graph_def(tmp_path / "ours")
    assert ours == graph_def(tmp_path / "direct")
    assert {"aten::sigmoid", "aten::linear"} <= {node.op for node in ours.node}


def test_the_logs_drawings_are_made_in_the_background_from_the_weights_when_asked(tmp_path, data):
    network = Network()
    log = TrainingLog(tmp_path)
    log.images(5, 1, network, data.test)
    asked = network.layers[0].weight.detach().clone()
    with torch.no_grad():
        network.layers[0].weight.zero_()  # the next steps, while the drawing is made
    log.close()
    (logged,) = images(tmp_path)
    drawn = Image.open(io.BytesIO(logged.encoded_image_string)).convert("RGB")
    expected = TrainingLog(tmp_path / "again")
    expected.image("expected", weight_tiles(asked, "first-layer weights, after epoch 1", True), 5)
    expected.close()
    (reference,) = images(tmp_path / "again", "expected")
    assert logged.step == 5
    assert np.array_equal(
        np.asarray(drawn),
        np.asarray(Image.open(io.BytesIO(reference.encoded_image_string)).convert("RGB")),
    )


def test_a_failure_in_the_background_is_raised_by_close_which_still_closes_the_file(tmp_path):
    log = TrainingLog(tmp_path)

    def fail():
        raise OSError("No space left on device")

    log.in_background(fail)
    log.scalars(1, {"epoch/test_cost": 0.5})
    with pytest.raises(OSError, match="No space left"):
        log.close()
    assert scalars(tmp_path, "epoch/test_cost") == [(1, 0.5)]
