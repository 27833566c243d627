"""What a training run shows in TensorBoard (``tensorboard --logdir runs``).

SCALARS     batch/train_cost, batch/gradient_norm, batch/learning_rate  every --log-every SGD steps
            epoch/{train,test,validation}_{cost,accuracy}, epoch/epoch, epoch/seconds, ...
            per epoch
HISTOGRAMS  layer{l}/weights, layer{l}/biases, layer{l}/weight_gradients, layer{l}/bias_gradients
IMAGES      images/first_layer_weights, images/confusion_matrix  every --image-every epochs and
            after the last
HPARAMS     the training settings, with final/test_accuracy, final/best_test_accuracy,
            final/test_cost, final/train_cost (and final/validation_accuracy)

Everything is indexed by the SGD step (the x axis of every chart, and the slider of the
HISTOGRAMS and IMAGES tabs), so a resumed run's ``purge_step`` removes all of what was
logged after its checkpoint; ``epoch/epoch`` maps steps to epochs.

``TrainingLog`` writes; ``TensorBoard`` is the callback that writes a run's log as it trains.
"""

from pathlib import Path

from torch import Tensor

from gd_torch.core.data import Split
from gd_torch.core.model import Network
from gd_torch.core.run import Callback, Run
from gd_torch.core.settings import TrainingSettings, to_dict


class TrainingLog:
    def __init__(self, run_dir: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # a second to import: only when logging

        self.writer = SummaryWriter(str(run_dir), purge_step=purge_step)

    def batch(
        self,
        step: int,
        batch_cost: float | Tensor,
        gradient_norm: float | Tensor,
        learning_rate: float,
    ) -> None:
        """The mini-batch's cost, ‖∇C‖ and η (reading a tensor waits for the device)."""
        self.writer.add_scalar("batch/train_cost", batch_cost, step)
        self.writer.add_scalar("batch/gradient_norm", gradient_norm, step)
        self.writer.add_scalar("batch/learning_rate", learning_rate, step)

    def epoch(self, step: int, epoch: int, scalars: dict[str, float], network: Network) -> None:
        for name, value in ({"epoch": epoch} | scalars).items():
            self.writer.add_scalar(f"epoch/{name}", value, step)
        for l, layer in enumerate(network.layers, start=1):
            self.writer.add_histogram(f"layer{l}/weights", layer.weight, step)
            self.writer.add_histogram(f"layer{l}/biases", layer.bias, step)
            if layer.weight.grad is not None:
                self.writer.add_histogram(f"layer{l}/weight_gradients", layer.weight.grad, step)
                self.writer.add_histogram(f"layer{l}/bias_gradients", layer.bias.grad, step)
        self.writer.flush()

    def images_if_due(
        self,
        step: int,
        epoch: int,
        last_epoch: int,
        image_every: int,
        network: Network,
        test: Split,
    ) -> None:
        """``images`` every ``image_every`` epochs and after the last one."""
        if image_every and (epoch % image_every == 0 or epoch == last_epoch):
            self.images(step, epoch, network, test)

    def images(self, step: int, epoch: int, network: Network, test: Split) -> None:
        from gd_torch.analysis import figures  # matplotlib is loaded only when images are drawn
        from gd_torch.analysis.outputs import Mistakes, outputs

        weights = figures.neuron_images(
            "training_weights",
            f"First-layer weights after epoch {epoch}",
            {"": network.layers[0].weight},
        )
        self.writer.add_figure("images/first_layer_weights", weights, step)
        confusion = Mistakes.of(outputs(network, test.images), test).confusion
        self.writer.add_figure("images/confusion_matrix", figures.confusion_matrix(confusion), step)
        self.writer.flush()

    def hyperparameters(
        self, settings: TrainingSettings, final: dict[str, float], step: int
    ) -> None:
        """Into the run's own directory (SummaryWriter.add_hparams would start a sub-run)."""
        from torch.utils.tensorboard.summary import hparams

        values = {
            k: "-".join(map(str, v)) if isinstance(v, tuple) else v
            for k, v in to_dict(settings).items()
        }
        metrics = {f"final/{name}": value for name, value in final.items()}
        for summary in hparams(values, metrics):
            self.writer.file_writer.add_summary(summary)
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class TensorBoard(Callback):
    """Writes the run's TensorBoard log into its run directory (rank 0 only; nothing without
    one)."""

    def __init__(self):
        self.log: TrainingLog | None = None

    def on_run_start(self, run: Run) -> None:
        if run.run_dir is not None:  # resumed: drop what was logged after the checkpoint
            self.log = TrainingLog(
                run.run_dir, purge_step=run.first_step + 1 if run.resumed else None
            )

    def on_step_end(self, run: Run) -> None:
        if self.log is not None and run.step % run.options.log_every == 0:
            learning_rate = run.optimizer.param_groups[0]["lr"]
            self.log.batch(run.step, run.batch_cost, run.gradient_norm(), learning_rate)

    def on_epoch_end(self, run: Run) -> None:
        if self.log is not None:
            metrics = {k: v for k, v in run.metrics.items() if k not in ("epoch", "step")}
            self.log.epoch(run.step, run.epoch, metrics, run.network)
            last = 1 if run.options.dry_run else run.settings.epochs
            self.log.images_if_due(
                run.step, run.epoch, last, run.options.image_every, run.network, run.data.test
            )

    def on_run_end(self, run: Run) -> None:
        if self.log is None:
            return
        if run.outcome in ("finished", "stopped") and run.history:
            names = ("test_accuracy", "test_cost", "train_cost", "validation_accuracy")
            final = {k: run.metrics[k] for k in names if k in run.metrics}
            final["best_test_accuracy"] = max(epoch["test_accuracy"] for epoch in run.history)
            self.log.hyperparameters(run.settings, final, run.step)
        self.log.close()
