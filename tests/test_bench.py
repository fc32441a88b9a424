"""Benchmarks (scripts/bench.py and its scripts/benchmarks/) and accelerator options (smug.training.accelerator, in fit).

No assertion here is about how fast anything runs: the benchmarks are measurements, and these tests
check that they run, write what they promise and count what they claim to count.
"""

import csv
import dataclasses
import functools
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from smug.mri.data_consistency import conjugate_gradient, data_consistency
from smug.models import build_model
from smug.training import autocast, channel_networks, end_to_end_loss, fit, network_autocast
from smug.training import PerformanceOptions, TrainSettings
from smug.mri import MRIPhysics, apply_column_mask, normal_operator
from tests.conftest import TinySlices, random_complex, random_sens_maps

REPO = Path(__file__).resolve().parents[1]
# scripts/bench.py imports its benchmarks from its own folder; so do these tests.
sys.path.insert(0, str(REPO / "scripts"))
try:
    from benchmarks.harness import (
        SIZES,
        TARGET_COLUMNS,
        THROUGHPUT_COLUMNS,
        BenchSize,
        bench_size,
        count_host_syncs,
        time_call,
    )
    from benchmarks.cases import bench_layouts, compile_or_none
    from benchmarks.rules import RULE_COLUMNS, SNAKEMAKE_BENCHMARK_COLUMNS, rule_benchmarks
finally:
    sys.path.pop(0)
TARGET_NAMES = {
    "smug_forward_overhead",
    "closed_form_dc_speedup",
    "cg_host_syncs",
    "pgd_step_overhead",
    "loader_headroom",
}
TSV_HEADER = "\t".join(SNAKEMAKE_BENCHMARK_COLUMNS) + "\n"
H, W = 12, 12


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_script", REPO / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read_csv(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


# ----------------------------------------------------------------------------------------------
# scripts/bench.py end to end
# ----------------------------------------------------------------------------------------------


def test_tiny_preset_writes_the_three_tables_and_prints_every_ratio(tmp_path, capsys):
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "train_smug.tsv").write_text(TSV_HEADER + "120.5\t0:02:00\t900.0\t1\t1\t1\t0\t0\t90\t110\n")
    out_dir = tmp_path / "benchmarks"
    threads = torch.get_num_threads()
    try:
        _load_script().main(
            ["--size", "tiny", "--device", "cpu", "--out-dir", str(out_dir), "--rules-dir", str(rules_dir),
             "--threads", "1"]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)

    columns, throughput = _read_csv(out_dir / "throughput.csv")
    assert tuple(columns) == THROUGHPUT_COLUMNS
    names = [row["name"] for row in throughput]
    assert len(names) == len(set(names)) and {"denoiser_fwd_bwd", "modl_forward", "smug_forward"} <= set(
        names
    )
    for row in throughput:
        for key in ("seconds", "slices_per_s"):
            value = float(row[key])
            assert math.isfinite(value) and value > 0, (row["name"], key, value)
        assert float(row["slices_per_s"]) == pytest.approx(float(row["slices"]) / float(row["seconds"]))

    columns, targets = _read_csv(out_dir / "targets.csv")
    assert tuple(columns) == TARGET_COLUMNS
    assert {row["name"] for row in targets} == TARGET_NAMES
    for row in targets:
        measured, target = float(row["measured"]), float(row["target"])
        assert math.isfinite(measured) and measured > 0 and target > 0
        assert row["ok"] == str(measured <= target if row["goal"] == "<=" else measured >= target)
    syncs = next(row for row in targets if row["name"] == "cg_host_syncs")
    assert (
        syncs["ok"] == "True"
    ), syncs  # a count, not a timing: the CG must not read the device per iteration

    columns, rules = _read_csv(out_dir / "rules.csv")
    assert tuple(columns) == RULE_COLUMNS
    assert [row["rule"] for row in rules] == ["train_smug", "total"]
    assert float(rules[1]["seconds"]) == pytest.approx(120.5)

    printed = capsys.readouterr().out
    for name in TARGET_NAMES:
        assert name in printed
    assert "target" in printed and "peak RSS 900.0 MB" in printed


def test_script_help_and_bad_size(capsys):
    script = _load_script()
    with pytest.raises(SystemExit) as exit_help:
        script.main(["--help"])
    assert exit_help.value.code == 0 and "--rules-dir" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_bad:
        script.main(["--size", "huge"])
    assert exit_bad.value.code != 0


def test_bench_sizes_are_validated():
    assert bench_size("tiny") is SIZES["tiny"]
    with pytest.raises(ValueError, match="unknown benchmark size 'huge'"):
        bench_size("huge")
    with pytest.raises(ValueError, match="BenchSize.batch"):
        BenchSize(
            batch=0, coils=2, height=8, width=8, denoiser="dncnn", chans=2, depth=2, unrolls=1, samples=1
        )


# ----------------------------------------------------------------------------------------------
# Snakemake rule benchmarks
# ----------------------------------------------------------------------------------------------


def test_rule_benchmarks_parse_snakemake_tsvs(tmp_path):
    (tmp_path / "train_modl.tsv").write_text(
        TSV_HEADER
        + "100.0\t0:01:40\t500.0\t1\t1\t1\t0\t0\t50\t90\n"
        + "80.0\t0:01:20\t700.0\t1\t1\t1\t0\t0\t50\t70\n"
    )
    (tmp_path / "zero_filled_method.tsv").write_text(
        TSV_HEADER + "1.5\t0:00:01\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n"
    )
    (tmp_path / "notes.txt").write_text("not a benchmark")
    rows, total = rule_benchmarks(tmp_path)
    assert [row["rule"] for row in rows] == ["train_modl", "zero_filled_method"]  # slowest first
    assert rows[0] == {"rule": "train_modl", "runs": 2, "seconds": 90.0, "max_rss_mb": 700.0}
    assert rows[1]["seconds"] == 1.5 and math.isnan(rows[1]["max_rss_mb"])
    assert total == {"rule": "total", "runs": 3, "seconds": 91.5, "max_rss_mb": 700.0}


def test_rule_benchmarks_name_a_bad_file_and_accept_a_missing_folder(tmp_path):
    rows, total = rule_benchmarks(tmp_path / "absent")
    assert rows == [] and total["seconds"] == 0 and math.isnan(total["max_rss_mb"])
    (tmp_path / "broken.tsv").write_text("seconds\tmemory\n1\t2\n")
    with pytest.raises(ValueError, match=r"broken\.tsv.*no column s, max_rss"):
        rule_benchmarks(tmp_path)
    (tmp_path / "broken.tsv").write_text(TSV_HEADER + "fast\t0\t1\t1\t1\t1\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match=r"broken\.tsv, line 2: 'fast'"):
        rule_benchmarks(tmp_path)


# ----------------------------------------------------------------------------------------------
# Timing and host-sync counting
# ----------------------------------------------------------------------------------------------


def test_time_call_runs_warmup_plus_repeats_and_returns_a_duration():
    calls = []
    seconds = time_call(lambda: calls.append(1), warmup=2, repeats=3, device="cpu")
    assert len(calls) == 5 and seconds >= 0
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, repeats=0)


def test_host_syncs_are_counted_and_the_patch_is_undone(gen):
    x = torch.ones(3)
    with count_host_syncs() as count:
        bool(x.sum() > 0)
        x.sum().item()
        x.tolist()
        y = x * 2  # stays on the device
    assert count.host_reads == 3 and count.cuda_syncs is None and y.sum() == 6
    bool(x.any())
    assert (
        count.host_reads == 3
        and "__bool__" not in torch.Tensor.__dict__
        and "item" not in torch.Tensor.__dict__
    )

    # The batched multicoil CG reads the device once per check_every iterations, not per iteration.
    b, c = 2, 3
    sens = random_sens_maps(b, c, H, W, gen, torch.complex64)
    mask = torch.zeros(W, dtype=torch.bool)
    mask[::2] = True
    rhs = random_complex((b, H, W), gen, torch.complex64)

    def matrix(x):
        return normal_operator(x, mask, sens) + 0.1 * x

    for max_iter, check_every, expected in [(10, 8, 2), (16, 8, 2), (10, 1, 10)]:
        with count_host_syncs() as count:
            conjugate_gradient(matrix, rhs, rhs, max_iter=max_iter, tol=0.0, check_every=check_every)
        assert count.host_reads == expected, (max_iter, check_every)


# ----------------------------------------------------------------------------------------------
# Accelerator options
# ----------------------------------------------------------------------------------------------


def test_performance_options_validate_and_default_to_off():
    assert PerformanceOptions.from_dict(None) == PerformanceOptions()
    assert PerformanceOptions.from_dict({"amp": "bf16"}).amp == "bf16"
    with pytest.raises(ValueError, match="unknown amp mode 'fp8'"):
        PerformanceOptions.from_dict({"amp": "fp8"})
    with pytest.raises(ValueError, match="unknown performance option.*turbo"):
        PerformanceOptions.from_dict({"turbo": True})
    with pytest.raises(ValueError, match="channels_last"):
        PerformanceOptions(channels_last="yes")
    assert not torch.is_autocast_enabled("cpu")
    with autocast(PerformanceOptions(), "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(PerformanceOptions(amp="bf16"), "cpu"):
        assert torch.is_autocast_enabled("cpu")


def _unrolled(denoiser, denoiser_args, kind):
    torch.manual_seed(0)
    model_cfg = dict(
        denoiser=denoiser, denoiser_args=denoiser_args, num_unrolls=2, lam=0.5, learn_lam=True,
        cg_max_iter=4, cg_tol=1e-6,
    )  # fmt: skip
    return build_model(kind, model_cfg, dict(sigma=0.01, num_samples=2, weight_encoder=dict(num_chans=4)))


def _problem(gen, coils):
    mask = torch.zeros(W, dtype=torch.bool)
    mask[::2] = True
    sens = None if coils is None else random_sens_maps(2, coils, H, W, gen, torch.complex64)
    kspace = apply_column_mask(random_complex((2, coils or 1, H, W), gen, torch.complex64) * 0.1, mask)
    return kspace, mask, sens


@pytest.mark.parametrize("coils", [None, 3])
def test_bf16_stays_inside_the_networks(coils, gen):
    kspace, mask, sens = _problem(gen, coils)
    model = _unrolled("unet", dict(chans=4, num_pool_layers=2), "weighted_smug")
    cpu = torch.device("cpu")
    # Plain autocast lets the U-Net's last convolution hand bfloat16 to torch.complex, which refuses it.
    with pytest.raises(RuntimeError, match="BFloat16"), torch.autocast("cpu", dtype=torch.bfloat16):
        model(kspace, MRIPhysics(mask, sens), generator=torch.Generator().manual_seed(0))

    conv_dtypes = []
    first_conv = next(m for m in model.denoiser.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda module, args, out: conv_dtypes.append(out.dtype))
    options = PerformanceOptions(amp="bf16", channels_last=True)
    assert channel_networks(model) == [model.denoiser, model.weight_encoder]
    with network_autocast(model, options, cpu):
        out = model(kspace, MRIPhysics(mask, sens), generator=torch.Generator().manual_seed(0))
        # Data consistency called beside the networks still solves in complex64.
        dc = data_consistency(out, out, mask, 0.5, sens, max_iter=3)
    assert set(conv_dtypes) == {torch.bfloat16}
    assert (
        out.dtype == torch.complex64
        and dc.dtype == torch.complex64
        and torch.isfinite(torch.view_as_real(out)).all()
    )
    torch.view_as_real(out).square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    # The original forward is back: float32 again, and the reduced-precision result is close to it.
    conv_dtypes.clear()
    with torch.no_grad():
        reference = model(kspace, MRIPhysics(mask, sens), generator=torch.Generator().manual_seed(0))
    assert set(conv_dtypes) == {torch.float32} and "forward" not in vars(model.denoiser)
    assert (out.detach() - reference).abs().max() < 0.1 * reference.abs().max()


def _fit(tmp_path, model, name, **options):
    data = TinySlices(n=4)

    def validate(m):
        out = data.reconstruct(m)
        return {"score": -float((out - data.targets).abs().pow(2).mean())}

    settings = TrainSettings(epochs=1, batch_size=2, lr=1e-3, schedule="constant", seed=3, **options)
    loss = functools.partial(end_to_end_loss, loss_name="mse")
    checkpoint = tmp_path / f"{name}.ckpt"
    return fit(model, loss, data, validate, settings, torch.device("cpu"), checkpoint, {"run": name})


@pytest.mark.parametrize(
    "kind, cfg",
    [
        ("modl", dict(denoiser="dncnn", denoiser_args=dict(num_chans=4, num_layers=3))),
        ("unet", dict(input_mode="complex", chans=4, num_pool_layers=2)),
    ],
)
def test_fit_trains_with_bf16_and_channels_last(kind, cfg, tmp_path):
    torch.manual_seed(0)
    model_cfg = {**cfg, "num_unrolls": 2, "lam": 0.5, "learn_lam": False, "cg_max_iter": 3, "cg_tol": 1e-6}
    model = build_model(kind, model_cfg if kind == "modl" else cfg, {"sigma": 0.01, "num_samples": 2})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = _fit(
        tmp_path, model, kind, amp="bf16", channels_last=True, cudnn_benchmark=True, pin_memory=True
    )
    loss = result.history[0]["train_loss"]
    assert math.isfinite(loss) and loss > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert all("forward" not in vars(m) for m in model.modules())


def test_options_off_are_the_plain_run(tmp_path):
    def train(**options):
        torch.manual_seed(0)
        model = _unrolled("dncnn", dict(num_chans=4, num_layers=3), "modl")
        _fit(tmp_path, model, f"run{len(options)}", **options)
        return model.state_dict()

    plain = train()
    off = train(amp="off", channels_last=False, cudnn_benchmark=False, pin_memory=False)
    assert all(torch.equal(plain[k], off[k]) for k in plain)
    with pytest.raises(ValueError, match="unknown amp mode"):
        train(amp="fp16")


def test_cpu_runtime_settings_flush_denormals_and_keep_large_blocks():
    """setup_compute's process settings: denormals become zero (they slow convolutions several
    times), and on glibc the allocator keeps multi-MB activation blocks instead of unmapping them."""
    import sys

    from smug.utils import tune_cpu_runtime

    try:
        changed = tune_cpu_runtime()
        tiny = torch.tensor([1e-39], dtype=torch.float32)
        assert (tiny * 1.0).item() == 0.0
        assert "denormals flushed to zero" in changed
        if sys.platform.startswith("linux"):
            assert any("mmap threshold" in item for item in changed)
    finally:
        torch.set_flush_denormal(False)


def test_deterministic_mode_does_not_fill_new_tensors():
    """Deterministic algorithms stay on, without the NaN fill of every new tensor (a debugging aid
    that cost 13 % of SMUG's CPU training time and changes no result)."""
    from smug.utils import use_deterministic_algorithms

    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
    )
    try:
        use_deterministic_algorithms()
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.utils.deterministic.fill_uninitialized_memory = before[1]


def test_attack_and_evaluation_jobs_do_not_import_scipy_stats():
    """scipy.stats (half a second of every job's start) is imported only where an interval is taken."""
    import subprocess

    code = (
        "import sys, smug.evaluation.robustness, smug.evaluation.scoring; print('scipy.stats' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_attack_jobs_import_neither_pandas_nor_scipy():
    """An attack job (scripts/attack.py) imports what it runs: pandas and SciPy (the evaluation's
    table and small-feature test, ~0.3 s of start-up) stay out of its ~140 jobs."""
    import subprocess

    code = (
        "import runpy, sys; runpy.run_path('scripts/attack.py', run_name='not_main'); "
        "print(sorted(m for m in ('pandas', 'scipy') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# The DIDN's memory format and torch.compile against the eager default layout


def test_didn_channels_last_equals_the_default_layout(gen):
    """channels_last on, off and auto give the same outputs and gradients within float rounding."""
    from smug.models import DIDN

    torch.manual_seed(0)
    nets = {mode: DIDN(num_chans=8, num_dubs=1, channels_last=mode) for mode in ("off", "on", "auto")}
    for p in nets["off"].parameters():
        p.data.normal_(0, 0.1, generator=gen)
    for net in nets.values():
        net.load_state_dict(nets["off"].state_dict())
    x = torch.randn(3, 2, 20, 28, generator=gen)  # padded to 24 x 32 inside
    outs, grads = {}, {}
    for mode, net in nets.items():
        inp = x.clone().requires_grad_(True)
        out = net(inp)
        out.square().sum().backward()
        outs[mode], grads[mode] = out, inp.grad
        assert out.is_contiguous() and out.shape == x.shape
    for mode in ("on", "auto"):
        torch.testing.assert_close(outs[mode], outs["off"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grads[mode], grads["off"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="channels_last must be one of auto, on, off"):
        DIDN(channels_last="yes")


def test_layout_benchmark_rates_each_variant_against_eager_and_compile_matches_it():
    size = dataclasses.replace(bench_size("tiny"), denoiser="didn", chans=4, depth=1, repeats=1)
    rows, ratios = bench_layouts(size, torch.device("cpu"), PerformanceOptions())
    assert {r["name"] for r in ratios} == {
        "didn_forward_channels_last_vs_eager",
        "smug_forward_channels_last_vs_eager",
    }
    assert all(r["measured"] > 0 for r in ratios) and len(rows) == 4
    # torch.compile of the channels-last DIDN computes what eager computes (or is reported missing).
    from smug.models import DIDN

    torch.manual_seed(0)
    eager = DIDN(num_chans=4, num_dubs=1).eval()
    compiled = compile_or_none(eager, size, torch.device("cpu"))
    if compiled is None:
        pytest.skip("torch.compile cannot compile on this machine (no C++ compiler?)")
    x = torch.randn(size.samples * size.batch, 2, size.height, size.width)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# the memory case (issue 27): plain against memory-bounded steps
# ----------------------------------------------------------------------------------------------


_ALLOCATOR_PROBE = """
import sys, torch
from smug.utils import set_malloc_thresholds, tune_cpu_runtime
def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
if sys.argv[1] == "live":
    assert set_malloc_thresholds(1 << 20, 1 << 20)
else:
    assert tune_cpu_runtime()
before = rss_mib()
block = torch.ones(5 * 2**20)  # 20 MiB, below the scripts' 32 MiB mmap threshold
del block
print(rss_mib() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_live_cpu_memory_returns_freed_blocks_and_the_scripts_settings_keep_them():
    """What --cpu-memory chooses between: a freed 20 MiB block leaves the resident set at once under
    the live measurement's thresholds, and stays resident (in the heap, for reuse) under the
    scripts' own settings."""
    grown = {}
    for mode in ("live", "resident"):
        done = subprocess.run(
            [sys.executable, "-c", _ALLOCATOR_PROBE, mode], capture_output=True, text=True, check=True
        )
        grown[mode] = float(done.stdout.strip().splitlines()[-1])
    assert grown["live"] < 4 and grown["resident"] > 16, grown


def test_memory_case_writes_its_table_and_bounded_steps_keep_less(tmp_path, capsys):
    from benchmarks.harness import BenchSize
    from benchmarks.memory import MEMORY_COLUMNS, memory_benchmarks

    threads = torch.get_num_threads()
    try:
        _load_script().main(
            ["--case", "memory", "--size", "tiny", "--device", "cpu", "--out-dir", str(tmp_path),
             "--steps", "smug", "pgd_attack_smug", "--threads", "1"]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    columns, rows = _read_csv(tmp_path / "memory.csv")
    assert tuple(columns) == tuple(MEMORY_COLUMNS) and [r["step"] for r in rows] == [
        "smug",
        "pgd_attack_smug",
    ]
    assert "bounded MiB" in capsys.readouterr().out
    # where activations dominate (6 unrolls, 4 draws of a 16-channel DnCNN on 64x64), checkpointing
    # each unroll keeps a fraction of them
    size = BenchSize(
        batch=1, coils=2, height=64, width=64, denoiser="dncnn", chans=16, depth=6, unrolls=6, samples=4
    )
    (row,) = memory_benchmarks(size, torch.device("cpu"), steps=["smug"])
    assert row["bounded_mib"] < 0.6 * row["plain_mib"], row
    assert math.isfinite(row["time_ratio"]) and row["time_ratio"] > 0


def test_memory_case_times_plain_and_bounded_steps_alternately_when_asked(tmp_path):
    """Three interleaved pairs: medians in the time columns, the pairs' ratio range around them; the
    bounded-only run leaves the plain columns empty."""
    from benchmarks.harness import bench_size
    from benchmarks.memory import memory_benchmarks

    size = bench_size("tiny")
    memory = {"checkpoint_unrolls": True, "sample_chunk": None}
    (row,) = memory_benchmarks(size, torch.device("cpu"), ["smug"], memory, time_repeats=3)
    assert row["time_repeats"] == 3
    assert row["time_ratio_low"] <= row["time_ratio_high"]
    assert row["plain_s"] > 0 and row["bounded_s"] > 0
    (alone,) = memory_benchmarks(
        size, torch.device("cpu"), ["smug"], memory, plain=False, cpu_memory="resident"
    )
    assert math.isnan(alone["plain_mib"]) and math.isnan(alone["time_ratio"]) and alone["bounded_mib"] >= 0
    with pytest.raises(ValueError, match="time_repeats must be at least 1"):
        memory_benchmarks(size, torch.device("cpu"), ["smug"], memory, time_repeats=0)
    with pytest.raises(ValueError, match="unknown cpu_memory 'rss'"):
        memory_benchmarks(size, torch.device("cpu"), ["smug"], memory, cpu_memory="rss")
