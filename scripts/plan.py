#!/usr/bin/env python3
"""Plan a run before submitting it: every job of the DAG with its predicted runtime and peak memory.

Lists the jobs Snakemake would run for TARGETS from scratch (a dry run with the same config files),
calibrates each trained model once at the config's size on this machine's device (one optimiser step,
one forward pass and one attack gradient, each model in a fresh process, the config's `memory`
bounds applied), and scales the calibration by what each training and attack job does (the scaling
is in scripts/benchmarks/planning.py). Writes OUT (default results/plan.csv), warns for every job whose
`cluster.resources` request is below the prediction, naming the rule and both numbers, and prints the
run's GPU-hours. Run it on a node of the cluster's GPU partition for GPU figures (e.g. through
`srun --gres=gpu:1 python scripts/plan.py ...`); on a CPU the figures are the CPU's.

Example:
  python scripts/plan.py --configfile config/fastmri_knee.yaml config/fastmri_access.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch
from tqdm import tqdm

from benchmarks.calibration import calibrate_in_fresh_process, measure_startup
from benchmarks.planning import (
    FAILED,
    PLAN_COLUMNS,
    dry_run_jobs,
    gpu_hours,
    load_config,
    predict,
    problem_size,
    suggested_resources,
)
from benchmarks.report import write_rows
from smug.utils import parse_args, select_device, setup_compute, setup_logging

LOG = logging.getLogger("smug.plan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("targets", nargs="*", default=["all"], help="Snakemake targets (default: all)")
    parser.add_argument("--configfile", nargs="+", default=[], help="config files, as given to snakemake")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--out", default="results/plan.csv", help="the plan table (default: results/plan.csv)"
    )
    parser.add_argument("--steps", type=int, default=1, help="timed calls per calibration (default: 1)")
    parser.add_argument("--warmup", type=int, help="untimed calls before them (default: 1 on CUDA, 0 on CPU)")
    parser.add_argument(
        "--margin",
        type=float,
        default=1.5,
        help="predictions are the calibration's times this (default: 1.5)",
    )
    parser.add_argument(
        "--coils",
        type=int,
        help="coils of the calibration's slices (default: the synthetic data's; fastMRI: 15, knee)",
    )
    parser.add_argument(
        "--gpu-memory-mib",
        type=float,
        help="CUDA: the cluster GPU's memory the predictions are checked against (default: this GPU's)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parse_args(parser, argv)
    setup_logging()
    try:
        if args.steps < 1 or args.margin < 1:
            raise ValueError(
                f"--steps must be at least 1 and --margin at least 1, got {args.steps}, {args.margin}"
            )
        setup_compute(args.threads)
        device = select_device(args.device)
        warmup = args.warmup if args.warmup is not None else int(device.type == "cuda")
        jobs = dry_run_jobs(args.targets, args.configfile)  # first: its config errors are one line
        config = load_config(args.configfile)
        problem = problem_size(config, args.coils)
        accelerator = None
        if device.type == "cuda":
            accelerator = args.gpu_memory_mib or torch.cuda.get_device_properties(device).total_memory / 2**20
        LOG.info(
            "%d jobs; calibrating on %s at %dx%d, %d coils, batch %d (training) / %d (evaluation)",
            len(jobs), device, problem.height, problem.width, problem.coils, problem.train_batch, problem.eval_batch,
        )  # fmt: skip
        progress = tqdm(desc="calibrating models", unit="model", file=sys.stderr)

        def calibrate(spec):
            progress.set_postfix_str(spec["name"])
            try:
                return calibrate_in_fresh_process(spec, problem, device, config["memory"], args.steps, warmup)
            finally:
                progress.update()

        startup = measure_startup()
        rows = predict(config, jobs, calibrate, args.margin, accelerator, startup)
        progress.close()
        write_rows(args.out, rows, PLAN_COLUMNS)
    except (ValueError, OSError) as exc:
        sys.exit(f"error: {exc}")

    memory_limit = "mem_mb" if accelerator is None else f"the GPU's {accelerator:.0f} MiB"
    for row in rows:
        if row["status"].startswith("under-requested"):
            LOG.warning(
                "rule %s (%s): requests %s min and %s MB, predicted %s min and %s MiB (%s)",
                row["rule"], row["job"], _text(row["requested_runtime_min"]), _text(row["requested_mem_mb"]),
                row["predicted_runtime_min"], row["predicted_memory_mib"], f"{row['status']}, against {memory_limit}",
            )  # fmt: skip
    predicted, requested = gpu_hours(rows)
    calibrated = sum(row["predicted_runtime_min"] is not None for row in rows)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(
        f"{len(rows)} jobs, {calibrated} calibrated on {name}; GPU-hours: {predicted:.1f} predicted for the "
        f"calibrated jobs + {requested:.1f} requested by the others = {predicted + requested:.1f}"
    )
    suggested = suggested_resources(rows)
    if suggested:
        print(f"requests covering every calibrated job's prediction on {name} (cluster.resources):")
        for rule, request in suggested.items():
            print(f"  {rule}: {{{', '.join(f'{key}: {value}' for key, value in request.items())}}}")
    print(f"wrote {args.out}")
    failed = sorted({row["basis"] for row in rows if row["status"] == FAILED})
    if failed:
        sys.exit(f"error: {len(failed)} calibration(s) failed, their jobs unplanned: {'; '.join(failed)}")


def _text(value) -> str:
    return "-" if value is None else f"{value:g}"


if __name__ == "__main__":
    main()
