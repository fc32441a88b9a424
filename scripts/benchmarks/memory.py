"""Peak memory and time of one training step and one attack step, with every activation kept (plain)
and with the memory bounds of :func:`smug.models.set_memory` (bounded), side by side in one process.

Peak memory is the growth of the process's peak resident set during the step on CPU (Linux: the
high-water mark is reset before each step through ``/proc/self/clear_refs``), or of the device's
peak allocation on CUDA. On CPU what the resident set counts depends on the C library's allocator
(:data:`CPU_MEMORY`): by default (``live``) the measuring process hands every freed block of 1 MiB or
more back to the kernel, so the peak is that of the live tensors, the figure CUDA's peak allocation
gives; ``resident`` measures under the scripts' own allocator settings
(:func:`smug.utils.tune_cpu_runtime`), whose heap keeps freed blocks for speed: the host memory a CPU
job holds. Timed repeats always run under the scripts' settings. Each step runs the pipeline's own
objectives (:mod:`smug.training.objectives`) and attack (:func:`smug.attacks.pgd_kspace_attack`) on a
random problem of the preset's size.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from benchmarks.cases import make_problem
from benchmarks.harness import BenchSize
from smug.attacks import pgd_kspace_attack
from smug.models import MoDL, RSE2E, WeightEncoder, build_denoiser, set_memory
from smug.training.objectives import (
    distillation_loss,
    end_to_end_loss,
    pgd_training_loss,
    unrolled_stability_loss,
)
from smug.utils import set_malloc_thresholds, tune_cpu_runtime

_SCRIPTS = Path(__file__).resolve().parents[1]
# The steps measured: each method's training step, and one PGD step through the smoothed SMUG.
MEMORY_STEPS = ("smug", "weighted_smug", "rs_e2e", "modl_pgd", "pgd_attack_smug")
MEMORY_COLUMNS = [
    "step", "plain_mib", "bounded_mib", "memory_ratio", "plain_s", "bounded_s", "time_ratio",
    "time_repeats", "time_ratio_low", "time_ratio_high",
]  # fmt: skip


def _network(size: BenchSize, step: str) -> nn.Module:
    """The step's network at ``size``, in training mode (attacks: evaluation mode)."""
    torch.manual_seed(0)
    denoiser = build_denoiser(size.denoiser, **size.denoiser_args())
    common = dict(num_unrolls=size.unrolls, lam=size.lam, cg_max_iter=size.cg_max_iter, cg_tol=size.cg_tol)
    smoothing: dict[str, Any] = {}
    if step in ("smug", "weighted_smug", "pgd_attack_smug"):
        smoothing = dict(smoothing="smug", sigma=0.01, num_samples=size.samples)
    if step == "weighted_smug":
        smoothing.update(smoothing="weighted", weight_encoder=WeightEncoder())
    model: nn.Module = MoDL(denoiser, **common, **smoothing)
    if step == "rs_e2e":
        model = RSE2E(model, sigma=0.01, num_samples=size.samples)
    return model.eval() if step.startswith("pgd_attack") else model.train()


def _objective(step: str, model: nn.Module) -> Callable[[Any, torch.Generator], torch.Tensor]:
    if step in ("smug", "weighted_smug"):
        return lambda batch, gen: unrolled_stability_loss(model, batch, gen, target="denoised_gt")
    if step == "rs_e2e":
        teacher = copy.deepcopy(model.modl).eval().requires_grad_(False)
        return lambda batch, gen: distillation_loss(model, batch, gen, teacher=teacher)
    if step == "modl_pgd":
        return lambda batch, gen: pgd_training_loss(model, batch, gen, eps=0.02, steps=1)
    return lambda batch, gen: end_to_end_loss(model, batch, gen)


# What a CPU peak counts: the live tensors (freed blocks returned to the kernel at once), or the resident
# set under the scripts' allocator settings (freed blocks kept in the heap).
CPU_MEMORY = ("live", "resident")
_LIVE_THRESHOLD = 1 << 20


def _set_cpu_allocator(cpu_memory: str) -> None:
    """The measuring process's allocator settings for ``cpu_memory`` (:data:`CPU_MEMORY`)."""
    if cpu_memory == "live":
        if not set_malloc_thresholds(_LIVE_THRESHOLD, _LIVE_THRESHOLD):
            raise OSError("--cpu-memory live needs glibc's mallopt; use --cpu-memory resident")
    else:
        tune_cpu_runtime()


# The bounded steps' default: every unroll checkpointed, the draws all at once (the paper configs add
# chunks of 2 draws: bench.py --sample-chunk 2).
CHECKPOINTED = {"checkpoint_unrolls": True, "sample_chunk": None}


def _run_step(size: BenchSize, step: str, memory: dict[str, Any] | None, device: torch.device) -> None:
    """One step; ``memory`` (:func:`smug.models.set_memory`'s options) bounds it, None runs it plainly."""
    model = _network(size, step).to(device)
    if memory is not None:
        set_memory(model, **memory)
    batch = make_problem(size, device)
    generator = torch.Generator(device=device).manual_seed(0)
    if step.startswith("pgd_attack"):
        pgd_kspace_attack(model, batch, eps=0.02, steps=1, generator=generator, eot_samples=1)
        return
    loss = _objective(step, model)(batch, generator)
    loss.backward()


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status: peak memory can only be measured on Linux or CUDA")


def reset_peak_rss() -> float:
    """Reset the process's peak resident set to its current one; returns it (MiB)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return peak_rss_mib()


class PeakMeter:
    """Peak memory growth (``peak``, MiB) and ``seconds`` of the code run inside it: the process's
    peak resident set on CPU (reset on entry), the device's peak allocation on CUDA."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> PeakMeter:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            self.before = reset_peak_rss()
        self.tic = time.perf_counter()
        return self

    def __exit__(self, *exc) -> bool:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20 - self.before
        else:
            self.peak = peak_rss_mib() - self.before
        self.seconds = time.perf_counter() - self.tic
        return False


def measure_step(
    size: BenchSize, step: str, memory: dict[str, Any] | None, device: torch.device
) -> tuple[float, float]:
    """``(peak memory growth in MiB, seconds)`` of one step (``memory``: as :func:`_run_step`)."""
    with PeakMeter(device) as meter:
        _run_step(size, step, memory, device)
    return meter.peak, meter.seconds


def run_in_fresh_process(module: str, args: dict[str, Any], what: str) -> Any:
    """``benchmarks.<module>._child_main`` in a new Python process (a parent's heap would hide what
    a measurement allocates), given ``args`` and this process's torch thread count as JSON; returns
    the JSON on the last line of its stdout. A failure names ``what`` and the child's last line."""
    args = {**args, "threads": torch.get_num_threads()}
    entry = f"import sys; sys.path.insert(0, {str(_SCRIPTS)!r}); from benchmarks.{module} import _child_main; _child_main()"
    done = subprocess.run([sys.executable, "-c", entry, json.dumps(args)], capture_output=True, text=True)
    if done.returncode < 0:  # killed: by the kernel's out-of-memory killer where it is SIGKILL
        name = signal.Signals(-done.returncode).name
        hint = ", most likely for lack of memory" if -done.returncode == signal.SIGKILL else ""
        raise ValueError(f"{what}: the process was killed by {name}{hint}")
    if done.returncode != 0:
        lines = (done.stderr.strip() or f"exit status {done.returncode}").splitlines()
        raise ValueError(f"{what}: {lines[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_main() -> None:
    """Entry of the measuring process: JSON arguments in ``sys.argv[1]``, JSON on the last line of
    stdout; untimed warm-up steps of one unroll and one draw first. With ``repeats`` the process
    times the plain and the bounded step alternately (``[plain seconds], [bounded seconds]``, the
    pair's order swapped every time so that a drift of the machine falls on both); otherwise it
    measures one step (``[MiB, seconds]``)."""
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    if args["device"] == "cpu":
        _set_cpu_allocator("resident" if args.get("repeats") else args["cpu_memory"])
    size = BenchSize(**args["size"])
    device = torch.device(args["device"])
    memory = args["memory"]
    warm = dataclasses.replace(size, unrolls=1, samples=1)
    warm_memory = (
        None if memory is None else {**memory, "sample_chunk": 1 if memory["sample_chunk"] else None}
    )
    if not args.get("repeats"):
        measure_step(warm, args["step"], warm_memory, device)
        print(json.dumps(measure_step(size, args["step"], memory, device)))
        return
    measure_step(warm, args["step"], None, device)
    measure_step(warm, args["step"], warm_memory, device)
    times: dict[str, list[float]] = {"plain": [], "bounded": []}
    for repeat in range(args["repeats"]):
        order = ("plain", "bounded") if repeat % 2 == 0 else ("bounded", "plain")
        for which in order:
            seconds = measure_step(size, args["step"], None if which == "plain" else memory, device)[1]
            times[which].append(seconds)
    print(json.dumps([times["plain"], times["bounded"]]))


def measure_in_fresh_process(
    size: BenchSize,
    step: str,
    memory: dict[str, Any] | None,
    device: torch.device,
    cpu_memory: str = "live",
) -> tuple[float, float]:
    """:func:`measure_step` in a new Python process (:func:`run_in_fresh_process`), its CPU
    allocator set for ``cpu_memory`` (:data:`CPU_MEMORY`)."""
    args = {
        "size": dataclasses.asdict(size),
        "step": step,
        "memory": memory,
        "device": str(device),
        "cpu_memory": cpu_memory,
    }
    what = f"memory benchmark of {step} ({'plain' if memory is None else 'bounded'})"
    peak, seconds = run_in_fresh_process("memory", args, what)
    return peak, seconds


def _interleaved_times(
    size: BenchSize, step: str, memory: dict[str, Any], device: torch.device, repeats: int
) -> tuple[list[float], list[float]]:
    """Seconds of ``repeats`` plain and bounded steps timed alternately in one fresh process."""
    args = {
        "size": dataclasses.asdict(size),
        "step": step,
        "memory": memory,
        "device": str(device),
        "repeats": repeats,
    }
    plain, bounded = run_in_fresh_process("memory", args, f"timing of {step}")
    return plain, bounded


def memory_benchmarks(
    size: BenchSize,
    device: torch.device,
    steps=MEMORY_STEPS,
    memory: dict[str, Any] = CHECKPOINTED,
    log=None,
    plain: bool = True,
    time_repeats: int = 1,
    cpu_memory: str = "live",
) -> list[dict[str, Any]]:
    """Plain against bounded (``memory``: :func:`smug.models.set_memory`'s options) peak memory and
    time of each step, each measured in a fresh process, bounded first (a plain step that does not
    fit then leaves the bounded figure measured); ``plain=False`` measures the bounded steps only
    (their plain columns empty). With ``time_repeats`` above 1 the times are instead the medians of
    that many plain and bounded steps timed alternately in one further process, and
    ``time_ratio_low``/``_high`` the range of the ratio over the adjacent pairs. ``cpu_memory``:
    what a CPU peak counts (:data:`CPU_MEMORY`); the single runs' times include its allocator's cost
    (``live``: every large block page-faulted afresh), the repeated timings do not."""
    if time_repeats < 1:
        raise ValueError(f"time_repeats must be at least 1, got {time_repeats}")
    if cpu_memory not in CPU_MEMORY:
        raise ValueError(f"unknown cpu_memory {cpu_memory!r}; valid: {', '.join(CPU_MEMORY)}")
    if device.type != "cuda" and not os.path.exists("/proc/self/clear_refs"):
        raise OSError("peak memory on CPU needs Linux's /proc/self/clear_refs")
    rows = []
    for step in steps:
        bounded_mib, bounded_s = measure_in_fresh_process(size, step, memory, device, cpu_memory)
        nan = float("nan")
        plain_mib, plain_s = (
            measure_in_fresh_process(size, step, None, device, cpu_memory) if plain else (nan, nan)
        )
        pair_ratios = [bounded_s / plain_s]
        if plain and time_repeats > 1:
            plain_times, bounded_times = _interleaved_times(size, step, memory, device, time_repeats)
            plain_s, bounded_s = statistics.median(plain_times), statistics.median(bounded_times)
            pair_ratios = [b / p for p, b in zip(plain_times, bounded_times)]
        row = {
            "step": step,
            "plain_mib": round(plain_mib, 1),
            "bounded_mib": round(bounded_mib, 1),
            "memory_ratio": round(bounded_mib / plain_mib, 3) if plain_mib > 0 else float("nan"),
            "plain_s": round(plain_s, 3),
            "bounded_s": round(bounded_s, 3),
            "time_ratio": round(bounded_s / plain_s, 3),
            "time_repeats": time_repeats if plain else 1,
            "time_ratio_low": round(min(pair_ratios), 3),
            "time_ratio_high": round(max(pair_ratios), 3),
        }
        if log is not None:
            log(row)
        rows.append(row)
    return rows
