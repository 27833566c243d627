"""The ``gd-torch`` command: one subcommand per task, each a thin layer over the library."""

import argparse
import dataclasses
import sys

from gd_torch.core.distributed import is_leader
from gd_torch.core.errors import GdTorchError
from gd_torch.core.presets import PRESETS, preset_settings
from gd_torch.core.settings import (
    DEVICE_NAMES,
    RunOptions,
    TrainingSettings,
    add_arguments,
    default_data_root,
    from_arguments,
)
from gd_torch.tools.compare import add_compare_arguments, run_compare, variant_values_joined
from gd_torch.tools.reproduce import add_reproduce_arguments, run_reproduce

SETTING_FLAGS = (
    *(field.name for field in dataclasses.fields(TrainingSettings)),
    "seeds",
    "num_seeds",
    "learning_rates",
)  # what a sweep's copies are made of
SETTINGS_TITLE = "training settings (they decide the result; --resume keeps them)"
OPTIONS_TITLE = "run options (where and how it runs; --resume may change them)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *arguments, **options):
        super().__init__(
            *arguments, allow_abbrev=False, **options
        )  # else --lr would mean --lr-schedule

    def error(self, message):
        """Usage mistakes as one line naming the problem (argparse prints the usage too)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _train(arguments) -> None:
    from gd_torch.api import train
    from gd_torch.core.resume import saved_settings
    from gd_torch.core.run import ProgressBar
    from gd_torch.dashboard.tensorboard import view_command

    if arguments.resume and arguments.preset:
        raise GdTorchError(
            "--preset cannot be given with --resume: a resumed run keeps its own settings"
        )
    if arguments.resume:
        settings, options = saved_settings(arguments.resume)
    else:
        settings = preset_settings(arguments.preset) if arguments.preset else None
        options = None
    settings = from_arguments(arguments, TrainingSettings, settings)
    options = from_arguments(arguments, RunOptions, options)
    callbacks = [ProgressBar()] if sys.stderr.isatty() else []
    result = train(settings, options, callbacks=callbacks, resume=arguments.resume)
    if result.run_dir is not None:
        steps = result.final["step"] if result.history else 0
        epochs = 1 if options.dry_run else settings.epochs
        print(f"view it with: {view_command(result.run_dir.parent, steps, epochs, options)}")


def _sweep(arguments) -> None:
    from gd_torch.tools.shards import saved_options
    from gd_torch.tools.sweep import resume_sweep, sweep

    if arguments.resume:
        given = [name for name in SETTING_FLAGS if getattr(arguments, name, None) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise GdTorchError(
                f"{flag} cannot be given with --resume: a resumed sweep trains its own copies"
            )
        options = from_arguments(arguments, RunOptions, saved_options(arguments.resume))
        resume_sweep(arguments.resume, options)
        return
    settings = from_arguments(arguments, TrainingSettings)
    options = from_arguments(arguments, RunOptions)
    num_seeds = 1 if arguments.num_seeds is None else arguments.num_seeds
    if num_seeds < 1:
        raise GdTorchError("--num-seeds must be a positive integer")
    seeds = arguments.seeds or range(settings.seed, settings.seed + num_seeds)
    sweep(settings, options, seeds, arguments.learning_rates)


def _bench(arguments) -> None:
    if arguments.sweep:
        from gd_torch.tools.bench_sweep import bench_sweep

        bench_sweep(arguments.data_root, arguments.copies, arguments.train_images, arguments.epochs)
        return
    if arguments.parallel:
        from gd_torch.tools.bench_parallel import bench_parallel

        bench_parallel(
            arguments.data_root,
            arguments.parallel_copies,
            arguments.epochs,
            arguments.parallel_batch_sizes,
            arguments.rounds,
        )
        return
    from gd_torch.tools.bench import run_bench

    run_bench(
        arguments.data_root,
        arguments.download,
        arguments.batch_sizes,
        arguments.repeats,
        arguments.tutorial_examples,
        arguments.threads,
        arguments.devices,
        arguments.json,
        compile=arguments.compile,
        end_to_end=arguments.end_to_end,
    )


def _eval(arguments) -> None:
    import torch

    from gd_torch.core.checkpoint import load_checkpoint, network_from_checkpoint, settings_of
    from gd_torch.core.data import load_mnist
    from gd_torch.core.evaluate import evaluate

    torch.set_num_threads(1)
    state = load_checkpoint(arguments.checkpoint)
    network, settings = network_from_checkpoint(state, arguments.checkpoint)
    data_root = arguments.data_root or settings_of(state, arguments.checkpoint)[1].data_root
    test = load_mnist(data_root, arguments.download).test.to("cpu", settings.torch_dtype)
    metrics = evaluate(network, test, settings.cost)
    print(
        f"{arguments.checkpoint}: {'-'.join(map(str, settings.layer_sizes))} network, trained "
        f"{state['epoch']} of {settings.epochs} epochs ({state['step']:,} SGD steps)"
    )
    print(
        f"test cost {metrics.cost:.4f} ({settings.cost} convention)  test accuracy "
        f"{100 * metrics.accuracy:.2f}% ({metrics.correct:,} of {metrics.total:,})"
    )


def _analyze(arguments) -> None:
    import torch

    from gd_torch.analysis.report import analyze
    from gd_torch.dashboard import projector

    torch.set_num_threads(1)
    analyze(
        arguments.checkpoint,
        arguments.data_root,
        arguments.download,
        arguments.top,
        arguments.one_weight_rate,
        grid_size=arguments.grid_size,
        surface_digits=arguments.surface_digits,
        gradient_draws=arguments.gradient_draws,
        digit_index=arguments.digit_index,
        projector=projector.embed,
    )


def _descend(arguments) -> None:
    from gd_torch.tools.descend import descend

    descend(
        arguments.data_root,
        arguments.download,
        arguments.learning_rate,
        arguments.epochs,
        arguments.steps,
        tuple(arguments.batch_sizes),
        arguments.seed,
        arguments.runs_dir,
        arguments.grid_size,
        arguments.surface_digits,
    )


def _predict(arguments) -> None:
    import torch

    from gd_torch.tools.handwriting import predict

    torch.set_num_threads(1)
    predict(arguments.checkpoint, arguments.images, arguments.show)


def _check_data(arguments) -> None:
    from gd_torch.core.mnist_files import MNIST_FILES, idx_problem, md5, raw_folder, where_files_go

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
        status = problem or (
            "official (md5 matches)"
            if official
            else "sound IDX file, but not the official one (md5 differs)"
        )
        print(f"  {file.name:<24} {path.stat().st_size:>11,} bytes  {status}")
    if problems:
        raise GdTorchError(
            f"{problems} of the 4 MNIST files are missing or broken: "
            f"{where_files_go(arguments.data_root)}"
        )
    print(
        "all four files are present and sound"
        + (
            ", and they are the official MNIST."
            if not unofficial
            else f"; {unofficial} differ from the official MNIST."
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gd-torch",
        description="The 3Blue1Brown / Nielsen digit network, trained by gradient descent.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a network by SGD and log it to TensorBoard")
    train.add_argument(
        "--preset",
        choices=PRESETS,
        help="start from a named published configuration; options given beside it override it",
    )
    train.add_argument(
        "--resume",
        metavar="RUN_DIR_OR_CHECKPOINT",
        help="continue a stopped run "
        "in its own directory from its last.pt (or the .pt given), with its own "
        "training settings; run options may change",
    )
    add_arguments(train, TrainingSettings, SETTINGS_TITLE)
    add_arguments(train, RunOptions, OPTIONS_TITLE)
    train.set_defaults(run=_train)

    sweep = commands.add_parser(
        "sweep", help="train many seeds and learning rates at once, as one batched computation"
    )
    add_arguments(sweep, TrainingSettings, SETTINGS_TITLE)
    add_arguments(sweep, RunOptions, OPTIONS_TITLE)
    seeds = sweep.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="S",
        help="the seeds to train (default: --num-seeds from --seed)",
    )
    seeds.add_argument(
        "--num-seeds",
        type=int,
        metavar="K",
        help="train seeds --seed, --seed+1, ..., --seed+K-1 (default: 1)",
    )
    sweep.add_argument(
        "--learning-rates",
        type=float,
        nargs="+",
        metavar="η",
        help="train every seed at each rate (default: --learning-rate)",
    )
    sweep.add_argument(
        "--resume",
        metavar="SWEEP_DIR",
        help="train the copies of that sweep that did not finish (from their last epoch's "
        "checkpoint), keep the others, and write its summary; run options may change",
    )
    sweep.set_defaults(run=_sweep)

    bench = commands.add_parser(
        "bench",
        help="seconds per epoch of both engines against the tutorial pipeline and the "
        "arithmetic floor; --sweep: batched sweeps and torchrun",
    )
    bench.add_argument(
        "--data-root",
        default=default_data_root(),
        help="MNIST folder (default: $GD_TORCH_DATA or ./data)",
    )
    bench.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download MNIST when missing",
    )
    bench.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[10, 100, 1000],
        metavar="N",
        help="(default: 10 100 1000)",
    )
    bench.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed epochs per row after a warm-up; the table shows the median (default: 5)",
    )
    bench.add_argument(
        "--tutorial-examples",
        type=int,
        default=10_000,
        help="images the tutorial pipeline is timed on, scaled to an epoch (default: 10000)",
    )
    bench.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for PyTorch (default: 1, as gd-torch train)",
    )
    bench.add_argument(
        "--devices",
        nargs="+",
        choices=DEVICE_NAMES[1:],
        default=None,
        help="(default: cpu, and cuda when present)",
    )
    bench.add_argument(
        "--json", action="store_true", help="print the report as JSON instead of the table"
    )
    bench.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time both engines with --compile (default: yes)",
    )
    bench.add_argument(
        "--end-to-end",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the whole default gd-torch train and each compile, in new processes, "
        "in floor-epochs (default: yes)",
    )
    sweep_bench = bench.add_argument_group(
        "--sweep and --parallel",
        "K seeds one after another vs one batched sweep; a sharded sweep and data parallelism on "
        "1 and 2 processes",
    )
    sweep_bench.add_argument(
        "--sweep", action="store_true", help="time sweeps instead of the engines"
    )
    sweep_bench.add_argument(
        "--parallel",
        action="store_true",
        help="time a sharded sweep and data-parallel SGD steps on 1 and 2 processes",
    )
    sweep_bench.add_argument(
        "--parallel-copies",
        type=int,
        default=16,
        metavar="K",
        help="copies of the sharded sweep of --parallel (default: 16)",
    )
    sweep_bench.add_argument(
        "--parallel-batch-sizes",
        type=int,
        nargs="+",
        default=[10, 100, 1000, 10000, 60000],
        metavar="N",
        help="batch sizes of the data-parallel steps of --parallel (default: 10 100 1000 10000 "
        "60000, full-batch gradient descent)",
    )
    sweep_bench.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of --parallel, alternating 1 and 2 processes; medians (default: 3)",
    )
    sweep_bench.add_argument(
        "--copies",
        type=int,
        nargs="+",
        default=[1, 4, 16, 64],
        metavar="K",
        help="sweep sizes to time (default: 1 4 16 64)",
    )
    sweep_bench.add_argument(
        "--train-images",
        type=int,
        default=10_000,
        metavar="N",
        help="train on the first N images, to keep it short (default: 10000)",
    )
    sweep_bench.add_argument(
        "--epochs",
        type=int,
        default=1,
        help="epochs per run, and of the sharded sweep (default: 1)",
    )
    bench.set_defaults(run=_bench)

    evaluate = commands.add_parser("eval", help="test cost and accuracy of a checkpoint")
    evaluate.add_argument(
        "checkpoint", help="a .pt file written by gd-torch train (e.g. runs/<run>/last.pt)"
    )
    evaluate.add_argument(
        "--data-root", default=None, help="MNIST folder (default: the one the run was trained with)"
    )
    evaluate.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download MNIST when missing",
    )
    evaluate.set_defaults(run=_eval)

    analyze = commands.add_parser(
        "analyze", help="figures of what a checkpoint's network learned, as PNGs and in TensorBoard"
    )
    analyze.add_argument(
        "checkpoint", help="a .pt file written by gd-torch train; the figures go into its folder"
    )
    analyze.add_argument(
        "--data-root", default=None, help="MNIST folder (default: the one the run was trained with)"
    )
    analyze.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download MNIST when missing",
    )
    analyze.add_argument(
        "--top",
        type=int,
        default=5,
        help="how many of the most sensitive weights and biases to list (default: 5)",
    )
    analyze.add_argument(
        "--one-weight-rate",
        type=float,
        default=None,
        help="η of the one-weight descent (default: chosen so its first step is 1)",
    )
    analyze.add_argument(
        "--grid-size",
        type=int,
        default=41,
        help="the cost surface on N x N networks, the trained weights at the centre (odd; "
        "default: 41)",
    )
    analyze.add_argument(
        "--surface-digits",
        type=int,
        default=10_000,
        help="the surface's cost over N training digits chosen at random once (the same N for "
        "every run), 0 for all (default: 10000)",
    )
    analyze.add_argument(
        "--gradient-draws",
        type=int,
        default=200,
        help="random mini-batches per batch size, to compare with the full gradient (default: 200)",
    )
    analyze.add_argument(
        "--digit-index",
        type=int,
        default=1,
        help="the test digit whose nudges are drawn (default: 1, a 2)",
    )
    analyze.set_defaults(run=_analyze)

    descend = commands.add_parser(
        "descend",
        help="the careful man and the drunk man: gradient descent and SGD from the same start, "
        "on one plane of the cost surface",
    )
    descend.add_argument(
        "--data-root",
        default=default_data_root(),
        help="MNIST folder (default: $GD_TORCH_DATA or ./data)",
    )
    descend.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download MNIST when missing",
    )
    descend.add_argument(
        "--learning-rate",
        type=float,
        default=3.0,
        help="η of every walker, constant (default: 3.0)",
    )
    descend.add_argument(
        "--epochs",
        type=int,
        default=1,
        help="compare after this many passes over the training set: the same compute (default: 1)",
    )
    descend.add_argument(
        "--steps", type=int, default=100, help="and after this many steps each (default: 100)"
    )
    descend.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[10, 100],
        metavar="B",
        help="the SGD walkers beside full-batch gradient descent (default: 10 100)",
    )
    descend.add_argument(
        "--seed", type=int, default=0, help="the initial weights and batch order (default: 0)"
    )
    descend.add_argument(
        "--runs-dir", default="runs", help="parent of the new run directory (default: runs)"
    )
    descend.add_argument(
        "--grid-size",
        type=int,
        default=41,
        help="the cost surface behind the paths on N x N networks (odd; default: 41)",
    )
    descend.add_argument(
        "--surface-digits",
        type=int,
        default=10_000,
        help="the surface's cost over N training digits chosen at random once (the same N for "
        "every run), 0 for all (default: 10000)",
    )
    descend.set_defaults(run=_descend)

    predict = commands.add_parser(
        "predict", help="the digit a checkpoint's network sees in your own images"
    )
    predict.add_argument("checkpoint", help="a .pt file written by gd-torch train")
    predict.add_argument(
        "images", nargs="+", metavar="IMAGE", help="PNG or JPEG files, one digit each"
    )
    predict.add_argument(
        "--show",
        action="store_true",
        help="save the prepared 28x28 input as <image>.prepared.png beside each image",
    )
    predict.set_defaults(run=_predict)

    reproduce = commands.add_parser(
        "reproduce",
        help="train named configurations over several seeds and tabulate them beside the "
        "published numbers",
    )
    add_reproduce_arguments(reproduce)
    reproduce.set_defaults(run=run_reproduce)

    compare = commands.add_parser(
        "compare",
        help="a baseline against variants over paired seeds: the differences, with 95%% "
        "intervals and p-values",
    )
    add_compare_arguments(compare, SETTINGS_TITLE, OPTIONS_TITLE)
    compare.set_defaults(run=run_compare)

    check = commands.add_parser(
        "check-data", help="report which MNIST files are present, sound and official"
    )
    check.add_argument(
        "--data-root",
        default=default_data_root(),
        help="MNIST folder (default: $GD_TORCH_DATA or ./data)",
    )
    check.set_defaults(run=_check_data)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = variant_values_joined(sys.argv[1:] if argv is None else list(argv))
    arguments = build_parser().parse_args(argv)
    try:
        arguments.run(arguments)
    except GdTorchError as error:
        if is_leader():  # under torchrun, one line from rank 0, not one per rank
            print(f"gd-torch {arguments.command}: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
