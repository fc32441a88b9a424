#!/usr/bin/env python3
"""Train one stage of the study (denoiser pre-training, MoDL, SMUG, Weighted SMUG, RS-E2E).

Writes MODEL (weights + spec + provenance) and METRICS (per-epoch CSV) atomically; keeps a
resumable checkpoint at CHECKPOINT, so a killed run re-run with the same arguments continues where
it stopped. The spec is the JSON the Snakemake rule passes (see workflow/rules/common.smk,
training_spec), inline or as a file path.

Example (by hand):
  python scripts/train.py --spec spec.json --train resources/synthetic/multicoil_train/file1*.h5 \
      --val resources/synthetic/multicoil_val/file1*.h5 --sens-maps resources/synthetic/sens_maps \
      --mask resources/masks/4x.npz --init results/models/denoiser/model.pt \
      --model results/models/smug/model.pt --metrics results/models/smug/metrics.csv \
      --checkpoint results/checkpoints/smug.pt
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from smug.utils import add_compute_arguments, add_memory_arguments, argument_words, load_spec, parse_args
from smug.utils import select_device
from smug.utils import setup_compute, setup_logging, use_deterministic_algorithms
from smug.training import ranks_from_environment, start, stop, NonFiniteLossError, train_stage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spec", required=True, help="training spec: inline JSON or a JSON/YAML file")
    parser.add_argument(
        "--train",
        nargs="+",
        required=True,
        help="training volumes (fastMRI HDF5), or @LIST: one path per line",
    )
    parser.add_argument("--val", nargs="+", required=True, help="validation volumes (fastMRI HDF5), or @LIST")
    parser.add_argument("--mask", required=True, help="column mask .npz from scripts/make_masks.py")
    parser.add_argument(
        "--sens-maps",
        nargs="+",
        help="sensitivity-map files, or folders of them (multicoil data), searched in order",
    )
    parser.add_argument("--init", help="model.pt to start from (denoiser for MoDL/SMUG, MoDL for RS-E2E)")
    parser.add_argument("--model", required=True, help="output model.pt")
    parser.add_argument("--metrics", required=True, help="output per-epoch CSV")
    parser.add_argument("--checkpoint", required=True, help="resumable state (not a pipeline output)")
    parser.add_argument(
        "--ranks",
        type=int,
        default=1,
        help="data-parallel processes, one per GPU (started with torchrun on this node; default 1)",
    )
    add_compute_arguments(parser)
    add_memory_arguments(parser)
    words = argument_words(parser, argv)
    args = parse_args(parser, words)
    if args.ranks > 1 and "RANK" not in os.environ:
        # Each rank is this script again, started by torchrun with the same arguments.
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={args.ranks}",
        ]
        sys.exit(subprocess.run([*command, str(Path(__file__).resolve()), *words]).returncode)

    setup_logging()
    ranks = ranks_from_environment()
    try:
        if ranks.world_size != args.ranks:
            raise ValueError(f"--ranks {args.ranks}, but torchrun started {ranks.world_size} processes")
        # The job's threads are shared by its ranks.
        setup_compute(None if args.threads is None else max(1, args.threads // ranks.world_size))
        spec = load_spec(args.spec)
        use_deterministic_algorithms()
        device = start(ranks, select_device(args.device))
        train_stage(
            spec,
            args.train,
            args.val,
            args.mask,
            args.model,
            args.metrics,
            args.checkpoint,
            device,
            sens_dir=args.sens_maps,
            init_path=args.init,
            ranks=ranks,
            memory={"checkpoint_unrolls": args.checkpoint_unrolls, "sample_chunk": args.sample_chunk},
        )
    except (ValueError, OSError, KeyError, NonFiniteLossError) as exc:
        sys.exit(f"error: {exc}")
    finally:
        stop(ranks)


if __name__ == "__main__":
    main()
