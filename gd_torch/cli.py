"""The ``gd-torch`` command: one subcommand per task, each a thin layer over the library.

``main`` handles stop signals first, before torch is imported (``gd_torch.core.signals``), and
turns every GdTorchError and OSError into one line on stderr and an exit status.
"""

import argparse
import contextlib
import dataclasses
import os
import re
import sys
import threading

from gd_torch.core import signals  # imports nothing heavy: installed before torch loads
from gd_torch.core.errors import GdTorchError, one_line, os_error_message

SETTINGS_TITLE = "training settings (they decide the result; --resume keeps them)"
OPTIONS_TITLE = "run options (where and how it runs; --resume may change them)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *arguments, **options):
        super().__init__(
            *arguments, allow_abbrev=False, **options
        )  # else --lr would mean --lr-schedule

    def error(self, message):
        """Usage mistakes as one line naming the problem (argparse prints the usage too)."""
        message = re.sub(r"^argument (\S+): (must be )", r"\1 \2", message)  # as the settings say
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _train(arguments) -> None:
    from gd_torch.api import train
    from gd_torch.core.presets import preset_settings
    from gd_torch.core.resume import saved_settings
    from gd_torch.core.run import ProgressBar
    from gd_torch.core.settings import RunOptions, TrainingSettings, from_arguments
    from gd_torch.dashboard.tensorboard import view_command

    signals.leaving(" before training started: nothing was written")
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
    from gd_torch.core.settings import RunOptions, TrainingSettings, from_arguments
    from gd_torch.tools.shards import saved_options
    from gd_torch.tools.sweep import resume_sweep, sweep

    if arguments.resume:
        copies_made_of = [field.name for field in dataclasses.fields(TrainingSettings)]
        copies_made_of += ["seeds", "num_seeds", "learning_rates"]
        given = [name for name in copies_made_of if getattr(arguments, name, None) is not None]
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
    seeds = arguments.seeds or range(settings.seed, settings.seed + num_seeds)
    sweep(settings, options, seeds, arguments.learning_rates)


# Each mode of gd-torch bench has its own options; the defaults are filled in by ``_bench``, so
# that one given to another mode, where it would do nothing, is refused.
BENCH_MODES = {
    "without --sweep or --parallel": dict(
        download=True,
        batch_sizes=[10, 100, 1000],
        repeats=5,
        tutorial_examples=10_000,
        threads=1,
        devices=None,
        json=False,
        compile=True,
        end_to_end=True,
    ),
    "--sweep": dict(copies=[1, 4, 16, 64], train_images=10_000, epochs=1),
    "--parallel": dict(
        parallel_copies=16,
        epochs=1,
        parallel_batch_sizes=[10, 100, 1000, 10000, 60000],
        rounds=3,
    ),
}


def _bench(arguments) -> None:
    if arguments.sweep and arguments.parallel:
        raise GdTorchError("--sweep and --parallel are two benches: give one of them")
    mode = "--sweep" if arguments.sweep else "--parallel" if arguments.parallel else None
    mode = mode or "without --sweep or --parallel"
    mine = BENCH_MODES[mode]
    others = {name for options in BENCH_MODES.values() for name in options} - set(mine)
    wrong = [name for name in sorted(others) if getattr(arguments, name) is not None]
    if wrong:
        raise GdTorchError(
            f"--{wrong[0].replace('_', '-')} does not apply to gd-torch bench {mode}"
        )
    given = {
        name: default if getattr(arguments, name) is None else getattr(arguments, name)
        for name, default in mine.items()
    }
    if arguments.sweep:
        from gd_torch.tools.bench_sweep import bench_sweep

        bench_sweep(arguments.data_root, **given)
    elif arguments.parallel:
        from gd_torch.tools.bench_parallel import bench_parallel

        bench_parallel(
            arguments.data_root,
            given["parallel_copies"],
            given["epochs"],
            given["parallel_batch_sizes"],
            given["rounds"],
        )
    else:
        from gd_torch.tools.bench import run_bench

        run_bench(arguments.data_root, as_json=given.pop("json"), **given)


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
    from gd_torch.core.mnist_files import check_report

    lines, problem = check_report(arguments.data_root)
    print("\n".join(lines))
    if problem:
        raise GdTorchError(problem)


def build_parser() -> argparse.ArgumentParser:
    from gd_torch.core.presets import PRESETS
    from gd_torch.core.settings import (
        DEVICE_NAMES,
        RunOptions,
        TrainingSettings,
        add_arguments,
        default_data_root,
    )
    from gd_torch.tools.compare import add_compare_arguments, run_compare
    from gd_torch.tools.reproduce import add_reproduce_arguments, run_reproduce

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
        type=_positive_int,
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
        help="download MNIST when missing (default: yes)",
    )
    bench.add_argument(
        "--batch-sizes",
        type=_positive_int,
        nargs="+",
        metavar="N",
        help="(default: 10 100 1000)",
    )
    bench.add_argument(
        "--repeats",
        type=_positive_int,
        help="timed epochs per row after a warm-up; the table shows the median (default: 5)",
    )
    bench.add_argument(
        "--tutorial-examples",
        type=_positive_int,
        help="images the tutorial pipeline is timed on, scaled to an epoch (default: 10000)",
    )
    bench.add_argument(
        "--threads",
        type=_positive_int,
        help="CPU threads for PyTorch (default: 1, as gd-torch train)",
    )
    bench.add_argument(
        "--devices",
        nargs="+",
        choices=DEVICE_NAMES[1:],
        help="(default: cpu, and cuda when present)",
    )
    bench.add_argument(
        "--json",
        action="store_true",
        default=None,
        help="print the report as JSON instead of the table",
    )
    bench.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="also time both engines with --compile (default: yes)",
    )
    bench.add_argument(
        "--end-to-end",
        action=argparse.BooleanOptionalAction,
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
        metavar="K",
        help="copies of the sharded sweep of --parallel (default: 16)",
    )
    sweep_bench.add_argument(
        "--parallel-batch-sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="batch sizes of the data-parallel steps of --parallel (default: 10 100 1000 10000 "
        "60000, full-batch gradient descent)",
    )
    sweep_bench.add_argument(
        "--rounds",
        type=int,
        help="rounds of --parallel, alternating 1 and 2 processes; medians (default: 3)",
    )
    sweep_bench.add_argument(
        "--copies",
        type=_positive_int,
        nargs="+",
        metavar="K",
        help="sweep sizes to time (default: 1 4 16 64)",
    )
    sweep_bench.add_argument(
        "--train-images",
        type=_positive_int,
        metavar="N",
        help="train on the first N images, to keep it short (default: 10000)",
    )
    sweep_bench.add_argument(
        "--epochs", type=_positive_int, help="epochs per run, and of the sharded sweep (default: 1)"
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
        type=_positive_int,
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
        help="save the prepared 28x28 input as <image>.prepared.png beside each image "
        "(never over an existing file: <image>.prepared-2.png, ... then)",
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
    """Run one command; every way it can end is an exit status, with one line on stderr when it
    is not a success."""
    for stream in (sys.stdout, sys.stderr):  # a file name with undecodable bytes still prints
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    with signals.handling("gd-torch"), _quiet_thread_os_errors():  # first: a Ctrl-C while
        signals.leaving("; nothing was written")  # torch loads stops cleanly too
        from gd_torch.tools.compare import variant_values_joined

        argv = variant_values_joined(sys.argv[1:] if argv is None else list(argv))
        arguments = build_parser().parse_args(argv)
        command = f"gd-torch {arguments.command}"
        signals.handling_as(command)
        signals.leaving("")
        try:
            arguments.run(arguments)
            return
        except GdTorchError as error:
            message, exit_code = str(error), error.exit_code
        except OSError as error:  # the one place an OS error that nothing else words is said
            message, exit_code = os_error_message(error), 2
        except MemoryError:
            message, exit_code = "out of memory: choose smaller sizes", 2
        finally:
            _flush_stdout()
        from gd_torch.core.distributed import is_leader

        if is_leader():  # under torchrun, one line from rank 0, not one per rank
            try:
                print(f"{command}: error: {one_line(message)}", file=sys.stderr, flush=True)
            except OSError:  # stderr is gone too
                pass
        sys.exit(exit_code)


@contextlib.contextmanager
def _quiet_thread_os_errors():
    """An OSError that ends a background thread (TensorBoard's writer, on a full disk) is not
    printed there as a traceback: that writer raises it again in the main thread at its next
    call, where ``main`` says it in one line. Any other exception keeps its traceback."""
    default = threading.excepthook

    def hook(arguments) -> None:
        if not issubclass(arguments.exc_type, OSError):
            default(arguments)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = default


def _flush_stdout() -> None:
    """Flush stdout now; when its reader is gone (``| head``), send it to /dev/null, so that
    Python's own flush at exit does not print "Exception ignored ... BrokenPipeError"."""
    try:
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
