"""Calibration of the plan (``scripts/plan.py``): the time and peak memory of one optimiser step of a
model's training stage, one forward pass, and one attack gradient, at a config's problem size, on the
device the plan is made for.

Each model is measured in a fresh process (a parent's heap would hide what a step allocates), with
the pipeline's own objectives (:func:`smug.training.stages.loss_for`), optimiser
(:func:`smug.training.loop.make_optimizer`) and attack (:func:`smug.attacks.pgd_kspace_attack`), the
config's memory bounds applied as the training and attack rules apply them. The weights are fresh:
time and memory do not depend on their values.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
import time
from typing import Any

import torch

from benchmarks.cases import make_problem
from benchmarks.harness import BenchSize
from benchmarks.memory import PeakMeter, reset_peak_rss, run_in_fresh_process
from smug.attacks import pgd_kspace_attack
from smug.models import build_model, denoise_complex, set_memory
from smug.models.factory import unrolled_core
from smug.models.reconstruct import reconstruct
from smug.study import KINDS
from smug.training.loop import make_optimizer
from smug.training.stages import loss_for, train_settings
from smug.utils import tune_cpu_runtime


@dataclasses.dataclass(frozen=True)
class Problem:
    """The calibration's slices: ``coils`` receive coils (1: single-coil), ``height x width`` images,
    ``train_batch`` slices per optimiser step, ``eval_batch`` per forward pass and attack step."""

    coils: int
    height: int
    width: int
    train_batch: int
    eval_batch: int


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Seconds of one optimiser step, one forward pass (no gradients) and one attack gradient, and
    the peak memory (MiB) of training and of attacking: growth of the process's peak resident set on
    CPU, of the device's peak allocation on CUDA, above ``base_mib``, what the process held with the
    model and its slices loaded (resident set on CPU, allocation on CUDA)."""

    base_mib: float
    train_step_s: float
    forward_s: float
    attack_step_s: float
    train_peak_mib: float
    attack_peak_mib: float


def _batch(problem: Problem, slices: int, device: torch.device):
    size = BenchSize(
        batch=slices, coils=problem.coils, height=problem.height, width=problem.width,
        denoiser="dncnn", chans=1, depth=1, unrolls=1, samples=1,
    )  # fmt: skip
    return make_problem(size, device, multicoil=problem.coils > 1)


def calibrate(
    spec: dict[str, Any],
    problem: Problem,
    device: torch.device,
    memory: dict[str, Any],
    steps: int,
    warmup: int,
) -> Calibration:
    """Measure ``spec``'s model (a training spec, :func:`smug.study.plan.training_spec`): ``warmup``
    untimed and ``steps`` timed optimiser steps, as many forward passes and attack gradients."""
    torch.manual_seed(0)
    model = build_model(spec["kind"], spec["model"], spec.get("smoothing")).to(device)
    teacher = None
    if KINDS[spec["kind"]].smoothing == "e2e":  # RS-E2E distils the network it smooths
        teacher = copy.deepcopy(unrolled_core(model)).eval().requires_grad_(False)
    set_memory(model, **memory)
    objective = loss_for(spec, teacher, (problem.height, problem.width), device)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], train_settings(spec))
    train_batch = _batch(problem, problem.train_batch, device)
    eval_batch = _batch(problem, problem.eval_batch, device)
    generator = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device) / 2**20
    else:
        base = reset_peak_rss()

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        objective(model.train(), train_batch, generator).backward()
        optimizer.step()

    # A denoiser is validated on images and never attacked: its forward pass denoises the targets.
    denoiser = KINDS[spec["kind"]].family == "denoiser"

    def forward() -> None:
        with torch.no_grad():
            if denoiser:
                denoise_complex(model.eval(), eval_batch.target)
            else:
                reconstruct(model.eval(), eval_batch, generator)

    def attack_step() -> None:
        pgd_kspace_attack(model.eval(), eval_batch, eps=0.01, steps=1, generator=generator, eot_samples=1)

    calls = [("train", train_step), ("forward", forward), ("attack", attack_step)]
    measured = {"attack": (0.0, 0.0)}
    for name, call in calls[:2] if denoiser else calls:
        for _ in range(warmup):
            call()
        with PeakMeter(device) as meter:
            for _ in range(steps):
                call()
        measured[name] = (meter.seconds / steps, meter.peak)
    return Calibration(
        base_mib=base,
        train_step_s=measured["train"][0],
        forward_s=measured["forward"][0],
        attack_step_s=measured["attack"][0],
        train_peak_mib=measured["train"][1],
        attack_peak_mib=measured["attack"][1],
    )


def _child_main() -> None:
    """Entry of the measuring process: JSON arguments in ``sys.argv[1]``, the JSON calibration on
    the last line of stdout."""
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    # The jobs run with the scripts' CPU runtime settings (setup_compute), whose allocator thresholds
    # decide how much freed memory the process keeps: calibrate under the same ones.
    tune_cpu_runtime()
    result = calibrate(
        args["spec"], Problem(**args["problem"]), torch.device(args["device"]), args["memory"],
        args["steps"], args["warmup"],
    )  # fmt: skip
    print(json.dumps(dataclasses.asdict(result)))


def calibrate_in_fresh_process(
    spec: dict[str, Any],
    problem: Problem,
    device: torch.device,
    memory: dict[str, Any],
    steps: int,
    warmup: int,
) -> Calibration:
    """:func:`calibrate` in a new Python process (:func:`benchmarks.memory.run_in_fresh_process`)."""
    args = {
        "spec": spec,
        "problem": dataclasses.asdict(problem),
        "device": str(device),
        "memory": memory,
        "steps": steps,
        "warmup": warmup,
    }
    return Calibration(**run_in_fresh_process("calibration", args, f"calibration of {spec['name']}"))


def measure_startup(repeats: int = 2) -> float:
    """Seconds a job's process takes to start and import what every rule's script imports (the
    interpreter, torch, h5py and the library), the fastest of ``repeats`` fresh starts: the fixed
    cost of each job, which dominates short ones."""
    code = "import torch, h5py, smug.data, smug.models, smug.training, smug.attacks"
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr.strip() or f"exit status {done.returncode}").splitlines()
            raise ValueError(f"measuring a job's start-up: {lines[-1]}")
        times.append(time.perf_counter() - tic)
    return min(times)
