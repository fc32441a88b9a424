"""The plan of a run before it is submitted (``scripts/plan.py``): every job of the DAG Snakemake
would run, its requested resources, and its predicted runtime and peak memory from a calibration of
each model at the config's size (:mod:`benchmarks.calibration`).

Predictions scale the calibration by what a job does, from the config alone:

- ``train``: epochs x (ceil(train_slices / batch) optimiser steps + val_slices forward passes);
- ``attack``, ``protocol_attack``: ceil(test_slices / evaluation batch) x eps values x PGD steps
  x EOT draws (the smoothed models' only) attack gradients;

each plus a job process's measured start-up, times ``margin``. Other jobs (data, masks, classical
solvers, evaluation, tables) are listed with their request and ``not calibrated``: their requests
are counted as they are in the GPU-hours.
"""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from benchmarks.calibration import Calibration, Problem
from smug.study import KINDS, PROTOCOLS, config_checks, trained_methods, variant_models
from smug.study import plan as study_plan
from smug.utils import load_config_file

PLAN_COLUMNS = [
    "rule",
    "job",
    "gpu",
    "requested_runtime_min",
    "predicted_runtime_min",
    "requested_mem_mb",
    "predicted_memory_mib",
    "memory_of",
    "status",
    "basis",
]
CALIBRATED_RULES = ("train", "attack", "protocol_attack")
# The status of the jobs of a model whose calibration failed (its basis says why).
FAILED = "calibration failed"
# Rules whose jobs take another rule's cluster.resources entry (workflow/rules/attack.smk: a paper's
# protocol attack is rule attack with that paper's settings).
RESOURCES_OF = {"protocol_attack": "attack"}


@dataclasses.dataclass
class Job:
    """One job of a dry run: its rule, wildcards and requested resources (minutes, MB, GPUs)."""

    rule: str
    wildcards: dict[str, str]
    runtime: float | None
    mem_mb: float | None
    gpu: int

    @property
    def name(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.wildcards.items())


def load_config(configfiles: list[str], root: Path = Path(".")) -> dict:
    """The workflow's config/config.yaml under ``root`` overlaid by ``configfiles`` (as Snakemake's
    --configfile does), read strictly, with the schema's defaults filled in."""
    from snakemake.utils import update_config, validate

    config = load_config_file(root / "config" / "config.yaml")
    for path in configfiles:
        update_config(config, load_config_file(path))
    with tempfile.TemporaryDirectory() as folder:
        schema = Path(folder) / "config.schema.yaml"
        resolved = config_checks.resolved_schema(str(root / "workflow" / "schemas" / "config.schema.yaml"))
        schema.write_text(yaml.safe_dump(resolved))
        validate(config, str(schema), set_default=True)
    return config


def dry_run_jobs(targets: list[str], configfiles: list[str], root: Path = Path(".")) -> list[Job]:
    """Every job Snakemake would run in ``root`` for ``targets`` from scratch (``--dry-run --forceall``)."""
    command = [sys.executable, "-m", "snakemake", *targets, "--dry-run", "--forceall"]
    if configfiles:
        command += ["--configfile", *configfiles]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "rror" in line]
        raise ValueError(f"the dry run failed: {(errors or lines or ['no output'])[-1].strip()}")
    return parse_dry_run(done.stdout + done.stderr)


_RULE = re.compile(r"^(?:local)?rule (\w+):$")


def parse_dry_run(text: str) -> list[Job]:
    """The jobs of a Snakemake dry run's listing (``rule NAME:`` blocks with ``wildcards:`` and
    ``resources:`` lines)."""
    jobs: list[Job] = []
    for line in text.splitlines():
        stripped = line.strip()
        match = _RULE.match(stripped)
        if match:
            jobs.append(Job(match.group(1), {}, None, None, 0))
        elif jobs and stripped.startswith("wildcards:"):
            jobs[-1].wildcards = dict(_pairs(stripped[len("wildcards:") :]))
        elif jobs and stripped.startswith("resources:"):
            resources = dict(_pairs(stripped[len("resources:") :]))
            job = jobs[-1]
            job.runtime = _number(resources.get("runtime"))
            job.mem_mb = _number(resources.get("mem_mb"))
            gres = re.search(r"gpu(?::[^:,]+)?:(\d+)", resources.get("gres", ""))
            job.gpu = int(resources.get("gpu") or (gres.group(1) if gres else 0))
    return jobs


def _pairs(text: str):
    for item in text.split(","):
        if "=" in item:
            key, value = item.split("=", 1)
            yield key.strip(), value.strip()


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def problem_size(config: dict, coils: int | None) -> Problem:
    """The calibration's slices at the config's size: the synthetic data's crop and coils, or
    fastMRI's ``recon_size`` with ``coils`` (fastMRI knee: 15); single-coil data has one."""
    source = config["data"]["source"]
    height, width = (config["synthetic"] if source == "synthetic" else config["fastmri"])["recon_size"]
    if config["data"]["challenge"] == "singlecoil":
        coils = 1
    elif coils is None:
        coils = config["synthetic"]["coils"] if source == "synthetic" else 15
    return Problem(
        coils=coils,
        height=height,
        width=width,
        train_batch=config["training"]["batch_size"],
        eval_batch=config["evaluation"]["batch_size"],
    )


def calibrated_model(config: dict, job: Job, variants: dict) -> str | None:
    """The model a job of a calibrated rule trains or attacks, if it is one a training stage makes."""
    if job.rule not in CALIBRATED_RULES:
        return None
    model = job.wildcards.get("model")
    if model is None or (model not in trained_methods() and model not in variants):
        return None
    return model


def predict(
    config: dict,
    jobs: list[Job],
    calibrate: Callable[[dict], Calibration],
    margin: float,
    accelerator_mib: float | None = None,
    startup_s: float = 0.0,
) -> list[dict[str, Any]]:
    """One row per job (:data:`PLAN_COLUMNS`); ``calibrate(spec)`` is called once per model. Where it
    raises ValueError (a calibration that failed, e.g. killed for memory) the model's jobs get the
    status :data:`FAILED` with the error as their basis, and the other models are still planned.

    Each calibrated job's runtime includes ``startup_s``, a job process's fixed start-up
    (:func:`benchmarks.calibration.measure_startup`). A CPU calibration (``accelerator_mib`` None)
    predicts the process's resident memory, compared with the job's ``mem_mb``; a CUDA one predicts
    the device's peak allocation, compared with ``accelerator_mib`` (the memory of the cluster's GPU)."""
    on_device = "host" if accelerator_mib is None else "accelerator"
    variants = variant_models(config)
    calibrations: dict[str, Calibration] = {}
    rows = []
    for job in jobs:
        row = {
            "rule": job.rule,
            "job": job.name,
            "gpu": job.gpu,
            "requested_runtime_min": job.runtime,
            "requested_mem_mb": job.mem_mb,
            "predicted_runtime_min": None,
            "predicted_memory_mib": None,
            "memory_of": on_device,
            "status": "not calibrated",
            "basis": "",
        }
        model = calibrated_model(config, job, variants)
        if model is None:
            rows.append(row)
            continue
        spec = study_plan.training_spec(config, model, 0, variants)
        if model not in calibrations:
            try:
                calibrations[model] = calibrate(spec)
            except ValueError as exc:  # e.g. killed for memory: its jobs say so, the others are planned
                calibrations[model] = exc
        found = calibrations[model]
        if isinstance(found, ValueError):
            row.update(status=FAILED, basis=str(found))
            rows.append(row)
            continue
        if job.rule == "train":
            seconds, memory, basis = _train_prediction(config, spec, found)
        else:
            seconds, memory, basis = _attack_prediction(config, job, spec, found)
        if seconds is None:
            row.update(basis=basis)
            rows.append(row)
            continue
        seconds += startup_s
        basis = f"{startup_s:.3g} s start-up + {basis}" if startup_s else basis
        row.update(
            predicted_runtime_min=round(seconds * margin / 60, 2),
            predicted_memory_mib=round(memory * margin),
            basis=basis,
        )
        row["status"] = _status(row, row["requested_mem_mb"] if accelerator_mib is None else accelerator_mib)
        rows.append(row)
    return rows


def split_size(config: dict, split: str, count: int | None) -> int | None:
    """Slices a consumer of ``split`` uses: ``count``, or with None (all) the synthetic split's
    size; a fastMRI split's size is unknown before its volumes are indexed (None)."""
    if count is not None:
        return count
    if config["data"]["source"] != "synthetic":
        return None
    synthetic = config["synthetic"]
    return synthetic["volumes"][split] * synthetic["slices_per_volume"]


def _train_prediction(config: dict, spec: dict, found: Calibration):
    data, training = spec["data"], spec["training"]
    train = split_size(config, "train", data["train_slices"])
    val = split_size(config, "val", data["val_slices"])
    if train is None or val is None:
        return None, None, "training.train_slices or val_slices: all (unknown before the data is indexed)"
    steps = math.ceil(train / training["batch_size"])
    epochs = training["epochs"]
    forward_per_slice = found.forward_s / config["evaluation"]["batch_size"]
    seconds = epochs * (steps * found.train_step_s + val * forward_per_slice)
    basis = (
        f"{epochs} epochs x ({steps} steps x {found.train_step_s:.3g} s + {val} validation "
        f"slices x {forward_per_slice:.3g} s)"
    )
    return seconds, found.train_peak_mib + found.base_mib, basis


def _attack_prediction(config: dict, job: Job, spec: dict, found: Calibration):
    evaluation = config["evaluation"]
    attack = job.wildcards["attack"]
    test = split_size(config, "test", evaluation["test_slices"])
    if test is None:
        return None, None, "evaluation.test_slices: all (unknown before the data is indexed)"
    settings = PROTOCOLS[attack] if job.rule == "protocol_attack" else evaluation["pgd"]
    draws = settings["eot_samples"] if KINDS[spec["kind"]].smoothing is not None else 1
    batches = math.ceil(test / evaluation["batch_size"])
    eps = len(evaluation["attacks"][attack]["eps"])
    gradients = batches * eps * settings["steps"] * draws
    basis = f"{batches} batches x {eps} eps x {settings['steps']} steps x {draws} draws x {found.attack_step_s:.3g} s"
    return gradients * found.attack_step_s, found.attack_peak_mib + found.base_mib, basis


def _status(row: dict, memory_limit: float | None) -> str:
    short = []
    if (
        row["requested_runtime_min"] is not None
        and row["predicted_runtime_min"] > row["requested_runtime_min"]
    ):
        short.append("runtime")
    if memory_limit is not None and row["predicted_memory_mib"] > memory_limit:
        short.append("memory")
    return "under-requested " + " and ".join(short) if short else "ok"


def suggested_resources(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per ``cluster.resources`` entry of a calibrated rule, the smallest request that covers every
    prediction of the jobs that take it (:data:`RESOURCES_OF`; the margin included): ``runtime`` in
    minutes rounded up to 10, and, where the predictions are of host memory (a CPU calibration),
    ``mem_mb`` rounded up to 1,000 MB. A GPU calibration predicts the GPU's memory, which no request
    of ``mem_mb`` sets."""
    suggested: dict[str, dict[str, int]] = {}
    for row in rows:
        if row["predicted_runtime_min"] is None:
            continue
        rule = suggested.setdefault(RESOURCES_OF.get(row["rule"], row["rule"]), {"runtime": 0})
        rule["runtime"] = max(rule["runtime"], 10 * math.ceil(row["predicted_runtime_min"] / 10))
        if row["memory_of"] == "host":
            mem_mb = 1000 * math.ceil(row["predicted_memory_mib"] * 2**20 / 1e6 / 1000)
            rule["mem_mb"] = max(rule.get("mem_mb", 0), mem_mb)
    return suggested


def gpu_hours(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """``(predicted, requested)`` GPU-hours of the GPU jobs: the calibrated jobs' predictions, and
    the requests of the jobs left uncalibrated (counted as requested)."""
    predicted = requested = 0.0
    for row in rows:
        if not row["gpu"]:
            continue
        if row["predicted_runtime_min"] is not None:
            predicted += row["gpu"] * row["predicted_runtime_min"] / 60
        elif row["requested_runtime_min"] is not None:
            requested += row["gpu"] * row["requested_runtime_min"] / 60
    return predicted, requested
