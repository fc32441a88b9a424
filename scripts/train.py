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
import sys

from smug.cli import add_compute_arguments, load_spec, parse_args, setup_logging
from smug.runtime import select_device, setup_compute, use_deterministic_algorithms
from smug.stages import NonFiniteLossError, train_stage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="training spec: inline JSON or a JSON/YAML file")
    parser.add_argument(
        "--train", nargs="+", required=True, help="training volumes (fastMRI HDF5), or @LIST: one path per line"
    )
    parser.add_argument("--val", nargs="+", required=True, help="validation volumes (fastMRI HDF5), or @LIST")
    parser.add_argument("--mask", required=True, help="column mask .npz from scripts/make_masks.py")
    parser.add_argument(
        "--sens-maps", nargs="+", help="sensitivity-map files, or folders of them (multicoil data), searched in order"
    )
    parser.add_argument("--init", help="model.pt to start from (denoiser for MoDL/SMUG, MoDL for RS-E2E)")
    parser.add_argument("--model", required=True, help="output model.pt")
    parser.add_argument("--metrics", required=True, help="output per-epoch CSV")
    parser.add_argument("--checkpoint", required=True, help="resumable state (not a pipeline output)")
    add_compute_arguments(parser)
    args = parse_args(parser, argv)

    setup_logging()
    try:
        setup_compute(args.threads)
        spec = load_spec(args.spec)
        use_deterministic_algorithms()
        train_stage(
            spec,
            args.train,
            args.val,
            args.mask,
            args.model,
            args.metrics,
            args.checkpoint,
            select_device(args.device),
            sens_dir=args.sens_maps,
            init_path=args.init,
        )
    except (ValueError, OSError, KeyError, NonFiniteLossError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
