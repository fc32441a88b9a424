#!/usr/bin/env python3
"""Measure the speed of the reconstruction code and check it against its ratio targets.

Times the denoiser, MoDL, SMUG and RS-E2E forwards, data consistency (closed form vs conjugate gradient,
and the CG's host synchronisations), a PGD step and the cached slice dataset at one size preset,
then reads the pipeline's Snakemake rule benchmarks. Writes OUT_DIR/throughput.csv,
OUT_DIR/targets.csv and OUT_DIR/rules.csv and prints a summary with every ratio and whether it
meets its target. A missed target is a measurement, not a failure: the exit status stays 0.

Sizes: tiny (seconds on a laptop CPU), default (the embedded pipeline's sizes), official (the
side-by-side problem with the authors' SMUG code: 128x128, 8 coils, DIDN 64/2, N=8, M=10, lambda 1,
CG to 1e-6), paper (fastMRI knee: 320x320, 15 coils, DIDN 64/2, N=8, M=10; meant for a GPU).
Every size with the DIDN also times it channels-last, and with --compile through torch.compile,
against the eager default layout, printed as ratios (``*_vs_eager``).

Example:
  python scripts/bench.py --size default --device auto --out-dir results/benchmarks \
      --rules-dir results/benchmarks/rules --amp bf16 --channels-last --threads 2
"""

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import torch

from benchmarks.cases import run_benchmarks
from benchmarks.harness import SIZES, TARGET_COLUMNS, THROUGHPUT_COLUMNS, bench_size
from benchmarks.memory import CPU_MEMORY, MEMORY_COLUMNS, MEMORY_STEPS, memory_benchmarks
from benchmarks.report import format_summary, write_rows
from benchmarks.rules import RULE_COLUMNS, rule_benchmarks
from smug.training import AMP_MODES, PerformanceOptions
from smug.utils import parse_args, setup_logging, select_device, setup_compute

LOG = logging.getLogger("smug.bench")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size",
        "--shape",
        dest="size",
        default="default",
        choices=list(SIZES),
        help="size preset (default: default)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time the DIDN through torch.compile (skipped where it cannot)",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out-dir", default="results/benchmarks", help="folder for the three CSV files")
    parser.add_argument(
        "--rules-dir",
        default="results/benchmarks/rules",
        help="Snakemake benchmark TSVs to summarise (a missing folder gives an empty rules.csv)",
    )
    parser.add_argument(
        "--amp", default="off", choices=list(AMP_MODES), help="mixed precision in the networks"
    )
    parser.add_argument("--channels-last", action="store_true", help="NHWC convolutions")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="cuDNN autotuning (CUDA)")
    parser.add_argument("--pin-memory", action="store_true", help="pinned DataLoader batches (CUDA)")
    parser.add_argument("--repeats", type=int, help="timed calls per measurement (default: the preset's)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--case",
        default="speed",
        choices=["speed", "memory"],
        help="speed: the throughput and ratio targets; memory: peak memory and time of one training "
        "and one attack step, plain against memory-bounded (default: speed)",
    )
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=list(MEMORY_STEPS),
        default=list(MEMORY_STEPS),
        help="memory case: the steps measured (default: all)",
    )
    parser.add_argument(
        "--sample-chunk",
        type=int,
        help="memory case: the bounded steps denoise the M draws this many at a time (default: all at once)",
    )
    parser.add_argument(
        "--checkpoint-unrolls",
        default="on",
        choices=["on", "off"],
        help="memory case: the bounded steps checkpoint every unroll (default: on)",
    )
    parser.add_argument(
        "--time-repeats",
        type=int,
        default=1,
        help="memory case: time the plain and the bounded step this many times each, alternately in one "
        "process, and report medians and the ratio's range (default: 1, the memory runs' own times)",
    )
    parser.add_argument(
        "--cpu-memory",
        default="live",
        choices=list(CPU_MEMORY),
        help="memory case on CPU: live: the peak of live tensors (freed blocks returned to the kernel at "
        "once; what CUDA's peak allocation counts); resident: the resident set under the scripts' "
        "allocator settings, which keep freed blocks for speed (default: live)",
    )
    parser.add_argument(
        "--bounded-only",
        action="store_true",
        help="memory case: measure the bounded steps only (where a plain step does not fit)",
    )
    parser.add_argument("--unrolls", type=int, help="override the preset's unrolls N")
    parser.add_argument("--samples", type=int, help="override the preset's smoothing draws M")
    args = parse_args(parser, argv)

    setup_logging()
    try:
        setup_compute(args.threads)
        device = select_device(args.device)
        size = bench_size(args.size)
        if args.repeats is not None:
            size = dataclasses.replace(size, repeats=args.repeats)
        for key in ("unrolls", "samples"):
            if getattr(args, key) is not None:
                size = dataclasses.replace(size, **{key: getattr(args, key)})
        if args.case == "memory":
            _memory_case(args, size, device)
            return
        options = PerformanceOptions(
            amp=args.amp,
            channels_last=args.channels_last,
            cudnn_benchmark=args.cudnn_benchmark,
            pin_memory=args.pin_memory,
        )
        LOG.info("benchmarking size %s on %s with %s", args.size, device, options)
        throughput, targets = run_benchmarks(size, device, options, compiled=args.compile)
        rules, rules_total = rule_benchmarks(args.rules_dir)
        if not rules:
            LOG.warning("no Snakemake benchmark files in %s; rules.csv will be empty", args.rules_dir)
        out_dir = Path(args.out_dir)
        write_rows(out_dir / "throughput.csv", throughput, THROUGHPUT_COLUMNS)
        write_rows(out_dir / "targets.csv", targets, TARGET_COLUMNS)
        write_rows(out_dir / "rules.csv", [*rules, rules_total] if rules else [], RULE_COLUMNS)
    except (ValueError, OSError) as exc:
        sys.exit(f"error: {exc}")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"size {args.size} on {name}: amp={options.amp} channels_last={options.channels_last} "
        f"cudnn_benchmark={options.cudnn_benchmark} threads={torch.get_num_threads()}"
    )
    print(format_summary(throughput, targets, rules, rules_total if rules else None))
    print(f"wrote {out_dir / 'throughput.csv'}, {out_dir / 'targets.csv'}, {out_dir / 'rules.csv'}")


def _memory_case(args: argparse.Namespace, size, device: torch.device) -> None:
    """Plain against memory-bounded steps (:mod:`benchmarks.memory`), printed and written to
    OUT_DIR/memory.csv."""
    print(
        f"size {args.size}: {size.height}x{size.width}, {size.coils} coils, {size.denoiser} "
        f"{size.chans}/{size.depth}, N={size.unrolls}, M={size.samples}, batch {size.batch}, "
        f"bounded: checkpoint_unrolls {args.checkpoint_unrolls}, sample_chunk {args.sample_chunk}; "
        f"{device}, {torch.get_num_threads()} threads"
        + (f", {args.cpu_memory} memory" if device.type == "cpu" else "")
    )
    print(
        f"{'step':<16} {'plain MiB':>10} {'bounded MiB':>12} {'ratio':>6} {'plain s':>8} {'bounded s':>10} "
        f"{'ratio':>6} {'range over pairs':>16}"
    )

    def show(row):
        print(
            f"{row['step']:<16} {row['plain_mib']:>10.0f} {row['bounded_mib']:>12.0f} {row['memory_ratio']:>6.2f} "
            f"{row['plain_s']:>8.1f} {row['bounded_s']:>10.1f} {row['time_ratio']:>6.2f} "
            f"{row['time_ratio_low']:>7.2f}-{row['time_ratio_high']:.2f} (x{row['time_repeats']})",
            flush=True,
        )

    memory = {"checkpoint_unrolls": args.checkpoint_unrolls == "on", "sample_chunk": args.sample_chunk}
    rows = memory_benchmarks(
        size,
        device,
        args.steps,
        memory,
        log=show,
        plain=not args.bounded_only,
        time_repeats=args.time_repeats,
        cpu_memory=args.cpu_memory,
    )
    out = Path(args.out_dir) / "memory.csv"
    write_rows(out, rows, MEMORY_COLUMNS)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
