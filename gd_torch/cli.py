"""The ``gd-torch`` command: one subcommand per task, each a thin layer over the library."""

import argparse
import sys

from gd_torch.config import add_config_arguments, config_from_arguments, default_data_root
from gd_torch.errors import GdTorchError
from gd_torch.presets import PRESETS, preset_config
from gd_torch.reproduce import add_reproduce_arguments, run_reproduce


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """Usage mistakes as one line naming the problem (argparse prints the usage too)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _train(arguments) -> None:
    from gd_torch.train import train

    train(config_from_arguments(arguments, base=preset_config(arguments.preset) if arguments.preset else None))


def _eval(arguments) -> None:
    import torch

    from gd_torch.checkpoint import load_checkpoint, network_from_checkpoint
    from gd_torch.data import load_mnist
    from gd_torch.evaluate import evaluate

    torch.set_num_threads(1)
    network, config = network_from_checkpoint(load_checkpoint(arguments.checkpoint))
    data_root = arguments.data_root or config.data_root
    metrics = evaluate(network, load_mnist(data_root, arguments.download).test, config.cost)
    print(f"{arguments.checkpoint}: {'-'.join(map(str, config.layer_sizes))} network, trained {config.epochs} epochs")
    print(f"test cost {metrics.cost:.4f} ({config.cost} convention)  test accuracy {100 * metrics.accuracy:.2f}% "
          f"({metrics.correct:,} of {metrics.total:,})")


def _check_data(arguments) -> None:
    from gd_torch.mnist_files import MNIST_FILES, idx_problem, md5, raw_folder, where_files_go

    folder = raw_folder(arguments.data_root)
    print(f"MNIST files in {folder}:")
    problems, unofficial = 0, 0
    for file in MNIST_FILES:
        path = folder / file.name
        if not path.is_file():
            problems += 1
            print(f"  {file.name:<24} missing")
            continue
        problem = idx_problem(path, file)
        official = md5(path) == file.md5
        problems += problem is not None
        unofficial += not official
        status = problem or ("official (md5 matches)" if official else "sound IDX file, but not the official one (md5 differs)")
        print(f"  {file.name:<24} {path.stat().st_size:>11,} bytes  {status}")
    if problems:
        raise GdTorchError(f"{problems} of the 4 MNIST files are missing or broken: {where_files_go(arguments.data_root)}")
    print("all four files are present and sound" + (", and they are the official MNIST." if not unofficial else f"; {unofficial} differ from the official MNIST."))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gd-torch", description="The 3Blue1Brown / Nielsen digit network, trained by gradient descent.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a network by SGD and log it to TensorBoard")
    train.add_argument("--preset", choices=PRESETS, help="start from a named published configuration; options given beside it override it")
    add_config_arguments(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("eval", help="test cost and accuracy of a checkpoint")
    evaluate.add_argument("checkpoint", help="a .pt file written by gd-torch train (e.g. runs/<run>/last.pt)")
    evaluate.add_argument("--data-root", default=None, help="MNIST folder (default: the one the run was trained with)")
    evaluate.add_argument("--download", action=argparse.BooleanOptionalAction, default=True, help="download MNIST when missing")
    evaluate.set_defaults(run=_eval)

    reproduce = commands.add_parser("reproduce", help="train named configurations over several seeds and tabulate them beside the published numbers")
    add_reproduce_arguments(reproduce)
    reproduce.set_defaults(run=run_reproduce)

    check = commands.add_parser("check-data", help="report which MNIST files are present, sound and official")
    check.add_argument("--data-root", default=default_data_root(), help="MNIST folder (default: $GD_TORCH_DATA or ./data)")
    check.set_defaults(run=_check_data)
    return parser


def main(argv: list[str] | None = None) -> None:
    arguments = build_parser().parse_args(argv)
    try:
        arguments.run(arguments)
    except GdTorchError as error:
        sys.exit(f"gd-torch {arguments.command}: error: {error}")
