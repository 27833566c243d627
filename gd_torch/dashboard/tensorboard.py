"""What a training run shows in TensorBoard (``tensorboard --logdir runs``).

TIME SERIES, SCALARS
    batch/train_cost, batch/gradient_norm, batch/learning_rate    every --log-every SGD steps
    epoch/{train,test,validation}_{cost,accuracy}                  at step 0 (the untrained
        network) and after each epoch; epoch/best_test_accuracy, epoch/epoch,
        epoch/learning_rate, epoch/seconds, epoch/sgd_seconds after each epoch
CUSTOM SCALARS  train, test (and validation) cost on one chart, accuracy on another, η and ‖∇C‖
HISTOGRAMS  layer{l}/weights, layer{l}/biases, and layer{l}/weight_gradients,
    layer{l}/bias_gradients: ∂C/∂W^l, ∂C/∂b^l of the cost over the first 1,000 training digits
    (GRADIENT_SAMPLE); at step 0 and after each epoch, or each k-th epoch of a run longer than
    50 epochs, so that a tag has at most 51 (TensorBoard shows no more)
IMAGES      images/first_layer_weights (each neuron at its own brightness),
    images/first_layer_weights_one_scale, images/confusion_matrix: at step 0, every
    --image-every epochs and after the last
PR CURVES   pr_curves/digit_<d>: digit d against the rest, from the output a^L_d of the test
    digits, after the last epoch
PROJECTOR   the last hidden layer's activations of 2,000 test digits, after the last epoch
    (gd_torch.dashboard.projector)
TEXT        run/training_settings, run/run_options, run/versions (gd_torch.dashboard.text)
GRAPHS      the Network, traced
HPARAMS     the training settings and the metrics (gd_torch.dashboard.hparams)

Everything is indexed by the SGD step (the x axis of every chart, and the slider of the
HISTOGRAMS and IMAGES tabs), so a resumed run's ``purge_step`` removes all of what was
logged after its checkpoint; ``epoch/epoch`` maps steps to epochs.

``TrainingLog`` writes; ``TensorBoard`` is the callback that writes a run's log as it trains.
A set of histograms takes tens of milliseconds, a set of images (gd_torch.dashboard.cards) a
few, and both some more to encode: the log makes them on a thread of its own, from copies of the
weights taken when asked, while training goes on.
"""

import math
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gd_torch.core import manual
from gd_torch.core.data import Mnist, Split
from gd_torch.core.evaluate import evaluate, measure
from gd_torch.core.model import Network
from gd_torch.core.naming import single_run_names
from gd_torch.core.run import Callback, Run
from gd_torch.core.run_dir import default_run_name, library_versions
from gd_torch.core.settings import RunOptions, TrainingSettings
from gd_torch.dashboard import cards, hparams, projector
from gd_torch.dashboard.text import run_texts, settings_table

GRADIENT_SAMPLE = 1_000  # the gradient histograms are of the cost over the first 1,000 digits
MOST_HISTOGRAMS = 51  # per tag: TensorBoard's histogram views show no more (hard-coded)
TENSORBOARD_KEEPS = {"scalars": 1_000, "images": 10}  # per tag, unless --samples_per_plugin
LAYOUT = {  # CUSTOM SCALARS: one chart per question, every run on it
    "train against test": {
        "cost C: train, test and validation": [
            "Multiline",
            [r"^epoch/(train|test|validation)_cost$"],
        ],
        "accuracy: train, test and validation": [
            "Multiline",
            [r"^epoch/(train|test|validation)_accuracy$"],
        ],
        "learning rate η and gradient norm ‖∇C‖": [
            "Multiline",
            [r"^batch/(learning_rate|gradient_norm)$"],
        ],
    }
}


def histograms_due(epoch: int, epochs: int) -> bool:
    """Step 0, the last epoch, and every k-th epoch, k = ⌈epochs / 50⌉: at most 51 per tag."""
    every = math.ceil(epochs / (MOST_HISTOGRAMS - 1))
    return epoch % every == 0 or epoch == epochs


@torch.no_grad()
def sample_gradients(network: Network, sample: Split, cost: str) -> list[tuple[Tensor, Tensor]]:
    """[(∂C/∂W^l, ∂C/∂b^l)] of the cost over ``sample``, by backpropagation (BP1-BP4,
    gd_torch.core.manual), without touching the network's ``.grad``."""
    _, activations = manual.forward(network, sample.images)
    return manual.backward(network, activations, sample.targets, cost)


def step_zero_metrics(network: Network, data: Mnist, cost: str) -> dict[str, float]:
    """The untrained network's {train,test,validation}_{cost,accuracy}."""
    return measure(lambda split: [evaluate(network, split, cost)], data)[0]


def drawing_thread(name: str) -> ThreadPoolExecutor:
    """One worker thread, for ``TrainingLog``'s histograms and images (in the order handed)."""
    return ThreadPoolExecutor(1, thread_name_prefix=name)


class TrainingLog:
    """A run's TensorBoard event file. Scalars are written at once; histograms and images are
    made on the log's own thread (``in_background``), in the order asked for, from copies taken
    by the caller, so that a caller's next SGD steps (which release Python's lock) run beside
    them. ``wait`` waits for that thread; ``close`` waits, then closes the file.

    ``thread``: a one-worker executor that several logs share (a sweep's copies: one thread, not
    one per copy), which its owner shuts down; by default the log makes its own."""

    def __init__(
        self,
        run_dir: Path,
        purge_step: int | None = None,
        thread: ThreadPoolExecutor | None = None,
    ):
        from torch.utils.tensorboard import SummaryWriter  # a second to import: only when logging

        self.run_dir = Path(run_dir)
        self.writer = SummaryWriter(str(run_dir), purge_step=purge_step)
        self._own_thread = thread is None
        self._thread = thread or drawing_thread(f"TrainingLog {self.run_dir.name}")
        self._handed_over: list[Future] = []

    def in_background(self, work: Callable[[], object]) -> None:
        """Run ``work`` on the log's thread, after all handed over before it. Its failure is
        raised by the next hand-over, ``wait`` or ``close``."""
        finished, running = [], []
        for handed in self._handed_over:  # each asked once: one that ends now is not lost
            (finished if handed.done() else running).append(handed)
        self._handed_over = running
        for handed in finished:
            handed.result()  # raises its failure
        self._handed_over.append(self._thread.submit(work))

    def wait(self) -> None:
        """Until all handed over is written; raises the first failure."""
        handed_over, self._handed_over = self._handed_over, []
        for work in handed_over:
            work.result()

    def scalars(self, step: int, values: dict[str, float | Tensor]) -> None:
        """Several scalars of one step, as one event (a third of the cost of add_scalar's one
        event each, most of which is handing the event to the writer's thread)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(
            value=[
                Summary.Value(tag=tag, simple_value=float(value))  # as add_scalar writes one
                for tag, value in values.items()
            ]
        )
        self.writer.file_writer.add_summary(summary, step)

    def batch(
        self,
        step: int,
        batch_cost: float | Tensor,
        gradient_norm: float | Tensor,
        learning_rate: float,
    ) -> None:
        """The mini-batch's cost, ‖∇C‖ and η (reading a tensor waits for the device)."""
        self.scalars(
            step,
            {
                "batch/train_cost": batch_cost,
                "batch/gradient_norm": gradient_norm,
                "batch/learning_rate": learning_rate,
            },
        )

    def epoch(self, step: int, epoch: int, scalars: dict[str, float]) -> None:
        self.scalars(
            step, {f"epoch/{name}": value for name, value in ({"epoch": epoch} | scalars).items()}
        )

    def histograms(self, step: int, network: Network, sample: Split, cost: str) -> None:
        """Each layer's weights and biases, and the gradient of the cost over ``sample``: the
        gradient computed now, the histograms made in the background."""
        gradients = sample_gradients(network, sample, cost)
        tensors = {}
        for l, (layer, (nabla_w, nabla_b)) in enumerate(zip(network.layers, gradients), start=1):
            tensors[f"layer{l}/weights"] = layer.weight.detach().clone()
            tensors[f"layer{l}/biases"] = layer.bias.detach().clone()
            tensors[f"layer{l}/weight_gradients"] = nabla_w
            tensors[f"layer{l}/bias_gradients"] = nabla_b

        def write() -> None:
            for tag, values in tensors.items():
                self.writer.add_histogram(tag, values, step)

        self.in_background(write)

    def images_if_due(
        self,
        step: int,
        epoch: int,
        last_epoch: int,
        image_every: int,
        network: Network,
        test: Split,
    ) -> None:
        """``images`` at step 0, every ``image_every`` epochs and after the last one."""
        if image_every and (epoch % image_every == 0 or epoch == last_epoch):
            self.images(step, epoch, network, test)

    def images(self, step: int, epoch: int, network: Network, test: Split) -> None:
        """The first-layer weights and the test digits' confusion matrix, as they are now; drawn
        in the background."""
        from gd_torch.analysis.outputs import Mistakes, outputs

        when = "untrained (step 0)" if epoch == 0 else f"after epoch {epoch}"
        weights = network.layers[0].weight.detach().clone()
        confusion = Mistakes.of(outputs(network, test.images), test).confusion

        def draw() -> None:
            for tag, per_neuron in (
                ("images/first_layer_weights", True),
                ("images/first_layer_weights_one_scale", False),
            ):
                title = f"first-layer weights, {when}"
                self.image(tag, cards.weight_tiles(weights, title, per_neuron), step)
            self.image(
                "images/confusion_matrix",
                cards.confusion_card(confusion, f"test digits, {when}"),
                step,
            )

        self.in_background(draw)

    def image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        """An RGB picture, (height, width, 3) uint8 (gd_torch.dashboard.cards)."""
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def final(self, step: int, network: Network, test: Split) -> None:
        """After the last epoch: a PR curve per digit, and the last hidden layer's projector."""
        from gd_torch.analysis.outputs import outputs

        output = outputs(network, test.images)  # a^L, (n, 10)
        for digit in range(output.shape[1]):
            self.writer.add_pr_curve(
                f"pr_curves/digit_{digit}", test.labels == digit, output[:, digit], step
            )
        projector.embed(
            self.run_dir, f"step{step}", f"end of training (step {step:,})", network, test
        )

    def experiment(self, group: list[TrainingSettings], differing: list[str]) -> None:
        self.writer.file_writer.add_summary(hparams.experiment_summary(group, differing))

    def session_start(self, settings: TrainingSettings, trial: str) -> None:
        self.writer.file_writer.add_summary(hparams.session_start_summary(settings, trial))

    def session_end(self, outcome: str) -> None:
        if outcome in hparams.STATUS:  # an interrupted run ends when it is resumed
            self.writer.file_writer.add_summary(hparams.session_end_summary(outcome))

    def layout(self) -> None:
        self.writer.add_custom_scalars(LAYOUT)

    def texts(self, texts: dict[str, str], step: int = 0) -> None:
        for tag, markdown in texts.items():
            self.writer.add_text(tag, markdown, step)

    def graph(self, network: Network, example: Tensor) -> None:
        """The Network's forward pass, traced on ``example`` (one digit). Traced here without
        ``torch.jit.trace``'s check, which traces again and compares (a forward pass of fixed
        shape has nothing to disagree on), and which imports ``torch.testing``: 1.0-1.3 s in a
        process that has not imported ``torch._dynamo``. ``add_graph`` takes the traced module
        as it is and writes the same graph."""
        with warnings.catch_warnings():  # torch.jit.trace's deprecation and tracer warnings
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(network, example, check_trace=False)
            self.writer.add_graph(traced, example)

    def epoch_end(
        self,
        step: int,
        epoch: int,
        scalars: dict[str, float],
        network: Network,
        data: Mnist,
        *,
        cost: str,
        last_epoch: int,
        image_every: int,
    ) -> None:
        """All an epoch's end (or step 0: ``epoch`` 0) shows: its scalars, the histograms and
        images when due; then the events go to disk, once those are made."""
        self.epoch(step, epoch, scalars)
        if histograms_due(epoch, last_epoch):
            self.histograms(step, network, data.train[:GRADIENT_SAMPLE], cost)
        self.images_if_due(step, epoch, last_epoch, image_every, network, data.test)
        self.in_background(self.writer.flush)

    def close(self) -> None:
        """Waits for the background, then closes the event file (and raises the background's
        first failure, if it had one)."""
        try:
            self.wait()
        finally:
            if self._own_thread:
                self._thread.shutdown()
            self.writer.close()


def start_group(
    root: Path,
    group: list[TrainingSettings],
    differing: list[str],
    options: RunOptions,
    versions: dict,
    network: Network,
    data: Mnist,
) -> None:
    """The root of a group of runs (a sweep, a reproduction), a TensorBoard run of its own: the
    HPARAMS experiment of all of them, their settings (the values that vary listed) and
    options, the versions, and the graph of their Network."""
    log = TrainingLog(root)
    try:
        log.experiment(group, differing)
        log.texts(run_texts(group, options, versions))
        log.graph(network, data.test.images[:1])
    finally:
        log.close()


def samples_needed(steps: int, epochs: int, options: RunOptions) -> dict[str, int]:
    """Per plugin, the points a run logs per tag where that is more than TensorBoard keeps by
    default (1,000 scalars and 10 images per tag, sampled at random beyond that)."""
    images = (
        sum(epoch % options.image_every == 0 or epoch == epochs for epoch in range(epochs + 1))
        if options.image_every
        else 0
    )
    counts = {"scalars": max(steps // options.log_every, epochs + 1), "images": images}
    return {plugin: count for plugin, count in counts.items() if count > TENSORBOARD_KEEPS[plugin]}


def view_command(logdir: Path, steps: int, epochs: int, options: RunOptions) -> str:
    """``tensorboard --logdir DIR``, with ``--samples_per_plugin`` when the run logged more
    points than TensorBoard keeps by default, so that every point is shown."""
    needed = samples_needed(steps, epochs, options)
    flags = ",".join(f"{plugin}={count}" for plugin, count in needed.items())
    return f"tensorboard --logdir {logdir}" + (f" --samples_per_plugin {flags}" if flags else "")


class TensorBoard(Callback):
    """Writes the run's TensorBoard log into its run directory (rank 0 only; nothing without
    one).

    ``trial`` is the name the HPARAMS tab shows (default: the run's name, without its time);
    ``grouped`` runs belong to a group (a reproduction) whose root holds the HPARAMS experiment,
    so they write only their session.
    """

    def __init__(self, trial: str | None = None, grouped: bool = False):
        self.log: TrainingLog | None = None
        self.trial, self.grouped = trial, grouped

    def epoch_end(self, run: Run, step: int, epoch: int, metrics: dict[str, float]) -> None:
        self.log.epoch_end(
            step,
            epoch,
            metrics,
            run.network,
            run.data,
            cost=run.settings.cost,
            last_epoch=1 if run.options.dry_run else run.settings.epochs,
            image_every=run.options.image_every,
        )

    def on_run_start(self, run: Run) -> None:
        if run.run_dir is None:
            return
        if run.resumed:  # drop what was logged after the checkpoint; the options may differ
            self.log = TrainingLog(run.run_dir, purge_step=run.first_step + 1)
            self.log.texts(
                {"run/run_options": settings_table([run.options], "run option")}, run.step
            )
            return
        self.log = log = TrainingLog(run.run_dir)
        settings = run.settings
        if not self.grouped:
            log.experiment([settings], single_run_names(settings))
        name = self.trial or run.options.run_name or default_run_name(settings, run.options.dry_run)
        log.session_start(settings, name)
        log.layout()
        versions = library_versions() | {"device": str(run.device)}
        log.texts(run_texts([settings], run.options, versions))
        log.graph(run.network, run.data.test.images[:1])
        self.epoch_end(run, 0, 0, step_zero_metrics(run.network, run.data, settings.cost))

    def on_step_end(self, run: Run) -> None:
        if self.log is not None and run.step % run.options.log_every == 0:
            self.log_step(run)

    def on_steps_end(self, run: Run, steps: range) -> None:
        if self.log is not None:
            every = run.options.log_every
            for _ in run.replay(steps[-steps.start % every :: every]):  # the multiples of every
                self.log_step(run)

    def log_step(self, run: Run) -> None:
        learning_rate = run.optimizer_or_plan.param_groups[0]["lr"]
        self.log.batch(run.step, run.batch_cost, run.gradient_norm(), learning_rate)

    def on_epoch_end(self, run: Run) -> None:
        if self.log is not None:
            metrics = {k: v for k, v in run.metrics.items() if k not in ("epoch", "step")}
            metrics["best_test_accuracy"] = max(epoch["test_accuracy"] for epoch in run.history)
            self.epoch_end(run, run.step, run.epoch, metrics)

    def on_run_end(self, run: Run) -> None:
        if self.log is None:
            return
        if run.outcome in ("finished", "stopped") and run.history:
            self.log.final(run.step, run.network, run.data.test)
        self.log.session_end(run.outcome)
        self.log.close()
