"""gd-torch bench: the FLOP count behind the floor, and a small run of the whole table."""

import io
import json
import statistics

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from gd_torch.core.cost import one_hot
from gd_torch.core.engines import ENGINES
from gd_torch.core.errors import GdTorchError
from gd_torch.core.model import INPUT_SIZE, OUTPUT_SIZE, Network
from gd_torch.tools import bench_run
from gd_torch.tools.bench import end_to_end_table, flops_per_example, run_bench


@pytest.mark.parametrize("hidden_sizes", [(16, 16), (30,), (5, 9, 2)])
def test_flops_per_example_is_what_autograd_runs(hidden_sizes):
    """The floor's FLOP count against PyTorch's own count of one autograd step's matmuls."""
    batch_size = 7
    generator = torch.Generator().manual_seed(0)
    network = Network((INPUT_SIZE, *hidden_sizes, OUTPUT_SIZE), generator=generator)
    images, labels = (
        torch.rand(batch_size, INPUT_SIZE, generator=generator),
        torch.randint(0, OUTPUT_SIZE, (batch_size,), generator=generator),
    )
    with FlopCounterMode(display=False) as counter:
        ENGINES["autograd"](network, images, one_hot(labels), "quadratic")
    assert flops_per_example(network.sizes) * batch_size == counter.get_total_flops()


def test_bench_reports_every_row_consistently(fake_mnist_root):
    out = io.StringIO()
    run_bench(
        str(fake_mnist_root),
        download=False,
        batch_sizes=(10, 100),
        repeats=2,
        tutorial_examples=200,
        as_json=True,
        out=out,
        end_to_end=False,
    )
    report = json.loads(out.getvalue())
    (cpu,) = report["devices"]
    assert cpu["device"] == "cpu" and cpu["threads"] == 1
    assert cpu["floor_seconds_per_epoch"] == pytest.approx(
        cpu["gflop_per_epoch"] / cpu["matmul_gflop_per_second"]
    )
    rows = {(row["name"].split(" (")[0], row["batch_size"]): row for row in cpu["rows"]}
    names = (
        "tutorial pipeline",
        "autograd",
        "manual",
        "autograd, compiled by Inductor",
        "manual, compiled by Inductor",
        "manual, native steps",
    )
    expected = {(name, batch_size) for name in names for batch_size in (10, 100)}
    others = {
        ("manual, TensorBoard log on", 10),
        ("TensorBoard images", None),
        ("TensorBoard histograms", None),
        ("TensorBoard start and end of a run", None),
        ("evaluation, train + test sets", None),
    }
    assert expected | others == set(rows)
    for (name, batch_size), row in rows.items():
        assert len(row["repetitions"]) == 2 and row["seconds_per_epoch"] > 0
        examples = {
            "evaluation, train + test sets": 800,
            "TensorBoard images": 200,
            "TensorBoard start and end of a run": 200,
        }.get(name, 600)  # 600 training, 200 test digits (the histograms' sample: all 600)
        assert row["examples_per_second"] == pytest.approx(examples / row["seconds_per_epoch"])
        if batch_size is not None:
            assert row["times_floor"] == pytest.approx(
                row["seconds_per_epoch"] / cpu["floor_seconds_per_epoch"]
            )
            tutorial = rows[("tutorial pipeline", batch_size)]["seconds_per_epoch"]
            assert row["speedup_over_tutorial"] == pytest.approx(
                tutorial / row["seconds_per_epoch"]
            )
    logged = rows[("manual, TensorBoard log on", 10)]
    logging = cpu["logging_seconds_per_epoch"]
    assert 0 < logging < statistics.fmean(logged["repetitions"])
    # a 60-epoch default run: histograms at epochs 2, 4, ..., 60, images at 10, 20, ..., 60
    once = {
        name: rows[(name, None)]["seconds_per_epoch"]
        for name in (
            "TensorBoard images",
            "TensorBoard histograms",
            "TensorBoard start and end of a run",
        )
    }
    rarer = (
        30 * once["TensorBoard histograms"]
        + 6 * once["TensorBoard images"]
        + once["TensorBoard start and end of a run"]
    ) / 60
    assert cpu["run_epochs"] == 60 and cpu["image_every"] == 10
    assert cpu["rarer_logging_seconds_per_epoch"] == pytest.approx(rarer)
    assert cpu["logging_overhead"] == pytest.approx(
        (logging + rarer) / (statistics.fmean(logged["repetitions"]) - logging)
    )


def test_bench_prints_a_table_with_one_line_per_row(fake_mnist_root):
    out = io.StringIO()
    run_bench(
        str(fake_mnist_root),
        download=False,
        batch_sizes=(50,),
        repeats=1,
        tutorial_examples=50,
        out=out,
        compile=False,
        end_to_end=False,
    )
    lines = out.getvalue().splitlines()
    assert "1 thread(s)" in out.getvalue() and "TensorBoard logging at its defaults" in lines[-1]
    assert (
        sum(
            line.split()[0]
            in ("tutorial", "autograd", "manual", "manual,", "evaluation,", "TensorBoard")
            for line in lines
            if line
        )
        == 9
    )


@pytest.mark.parametrize("changes", [dict(batch_sizes=(601,)), dict(repeats=0)])
def test_bench_refuses_impossible_settings(fake_mnist_root, changes):
    with pytest.raises(GdTorchError):
        run_bench(
            str(fake_mnist_root),
            download=False,
            **({"tutorial_examples": 50} | changes),
            out=io.StringIO(),
        )


def test_bench_times_the_whole_default_run_twice_in_new_processes(fake_mnist_root):
    out = io.StringIO()
    run_bench(
        str(fake_mnist_root),
        download=False,
        batch_sizes=(50,),
        repeats=1,
        tutorial_examples=50,
        as_json=True,
        out=out,
        compile=False,
    )
    report = json.loads(out.getvalue())
    floor = report["devices"][0]["floor_seconds_per_epoch"]
    first, again = report["end_to_end"]
    assert (first["name"], again["name"]) == (
        "whole default run, first",
        "whole default run, again",
    )
    for row in first, again:
        assert row["batch_size"] == 10 and row["seconds"] > 0 and row["cpu_seconds"] > 0
        assert row["floor_epochs"] == pytest.approx(row["seconds"] / floor)
        # 600 fake digits: 60 epochs of 60 steps, too few to earn the compile
        assert row["sgd_steps"].startswith("reference loop (3,600 SGD steps do not earn")
    assert 0 < first["test_accuracy"] == again["test_accuracy"] <= 1  # the same seeded run
    lines = end_to_end_table(report["end_to_end"]).splitlines()
    assert lines[-2].startswith("whole default run, first") and "reference loop" in lines[-2]
    assert f"{100 * first['test_accuracy']:.2f}%" in lines[-1]


def test_bench_times_each_compile_cold_and_cached_in_new_processes(fake_mnist_root, monkeypatch):
    """The native steps at one batch size (an Inductor compile is the slow part of the test
    suite; test_bench_reports_every_row_consistently compiles those)."""
    monkeypatch.setattr(bench_run, "COMPILED", (("manual", "native"),))
    rows = bench_run.compile_rows(str(fake_mnist_root), False, 1, [10], print)
    assert [row["name"] for row in rows] == [
        "compile manual native, cold",
        "compile manual native, cached",
    ]
    for row in rows:
        assert row["batch_size"] == 10 and row["steps"] > 0
        assert row["seconds"] == pytest.approx(row["first_call"] - row["steps"])
    table = end_to_end_table([row | {"floor_epochs": 1.0} for row in rows])
    assert table.splitlines()[-2].startswith("compile manual native, cold")


def test_inductors_compile_rows_pay_its_machine_set_up_once_in_a_row_of_its_own(monkeypatch):
    """Which processes the compile rows start, with which caches (no compile: their figures are
    faked)."""
    started = []

    def new_process(arguments, cache_dir, temporary_dir=None):
        started.append((arguments[1:], cache_dir, temporary_dir))
        return 1.0, 1.0, '{"seconds": 2.0, "first_call": 3.0, "steps": 1.0}'

    monkeypatch.setattr(bench_run, "new_process", new_process)
    rows = bench_run.compile_rows("mnist", False, 1, [10, 100], lambda _: None)
    assert [(row["name"], row["batch_size"]) for row in rows] == [
        ("compile autograd inductor, new machine", 10),
        *(
            (f"compile {engine} {path}, {state}", batch_size)
            for batch_size in (10, 100)
            for engine, path in bench_run.COMPILED
            for state in ("cold", "cached")
        ),
    ]
    (new_machine, new_cache, machine), (set_up, inductor_cache, set_up_tmp), *rest = started
    assert new_machine[:3] == ["autograd", "inductor", "10"] and set_up == ["inductor-set-up"]
    assert set_up_tmp == machine and inductor_cache != new_cache
    caches = {}
    for (engine, path, batch, *_), cache, temporary_dir in rest:
        caches.setdefault((engine, path, batch), []).append(cache)
        # Inductor's rows: on the set-up machine, in the set-up cache; the native steps' alone
        assert (cache, temporary_dir) == (
            (inductor_cache, machine) if path == "inductor" else (cache, None)
        )
    native = [cold for (_, path, _), (cold, cached) in caches.items() if path == "native"]
    assert all(len(both) == 2 and both[0] == both[1] for both in caches.values())  # cold, cached
    assert len(set(native)) == 2 and not {new_cache, inductor_cache} & set(native)
