"""What a training run shows in TensorBoard (``tensorboard --logdir runs``).

SCALARS     batch/train_cost, batch/gradient_norm, batch/learning_rate  every --log-every SGD steps
            epoch/{train,test,validation}_{cost,accuracy}, epoch/epoch, epoch/seconds, ...  once per epoch
HISTOGRAMS  layer{l}/weights, layer{l}/biases, layer{l}/weight_gradients, layer{l}/bias_gradients  per epoch
IMAGES      images/first_layer_weights, images/confusion_matrix  every --image-every epochs and after the last
HPARAMS     the config, with final/test_accuracy, final/test_cost, final/train_cost, final/best_test_accuracy

Everything is indexed by the SGD step (the x axis of every chart, and the slider of the
HISTOGRAMS and IMAGES tabs), so a resumed run's ``purge_step`` removes all of what was
logged after its checkpoint; ``epoch/epoch`` maps steps to epochs.
"""

from pathlib import Path

import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from gd_torch.config import TrainConfig
from gd_torch.data import Split
from gd_torch.model import Network


def gradient_norm(gradients: list[Tensor]) -> Tensor:
    """‖∇C‖ = √(Σ_l ‖∂C/∂W^l‖² + ‖∂C/∂b^l‖²), from the gradients of every weight matrix and bias vector."""
    return torch.stack([gradient.norm() for gradient in gradients]).norm()


def gradients(network: Network) -> list[Tensor]:
    """Each weight's and bias's ``.grad``: ∇C of the last SGD step."""
    return [parameter.grad for parameter in network.parameters() if parameter.grad is not None]


class TrainingLog:
    def __init__(self, run_dir: Path, purge_step: int | None = None):
        self.writer = SummaryWriter(str(run_dir), purge_step=purge_step)

    def batch(self, step: int, batch_cost: float | Tensor, gradient_norm: float | Tensor, learning_rate: float) -> None:
        """Every --log-every SGD steps: the mini-batch's cost, ‖∇C‖ and η (reading a tensor waits for the device)."""
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

    def images_if_due(self, step: int, epoch: int, config: TrainConfig, network: Network, test: Split) -> None:
        """``images`` every --image-every epochs and after the last one."""
        last = 1 if config.dry_run else config.epochs
        if config.image_every and (epoch % config.image_every == 0 or epoch == last):
            self.images(step, epoch, network, test)

    def images(self, step: int, epoch: int, network: Network, test: Split) -> None:
        from gd_torch.analysis import figures  # matplotlib is loaded only when images are drawn
        from gd_torch.analysis.outputs import Mistakes, outputs

        weights = figures.neuron_images("training_weights", f"First-layer weights after epoch {epoch}", {"": network.layers[0].weight})
        self.writer.add_figure("images/first_layer_weights", weights, step)
        confusion = Mistakes.of(outputs(network, test.images), test).confusion
        self.writer.add_figure("images/confusion_matrix", figures.confusion_matrix(confusion), step)
        self.writer.flush()

    def hyperparameters(self, config: TrainConfig, final: dict[str, float], step: int) -> None:
        """Into the run's own directory (SummaryWriter.add_hparams would start a sub-run)."""
        values = {k: "-".join(map(str, v)) if isinstance(v, tuple) else v for k, v in config.to_dict().items()}
        metrics = {f"final/{name}": value for name, value in final.items()}
        for summary in hparams(values, metrics):
            self.writer.file_writer.add_summary(summary)
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
