#!/usr/bin/env python3
"""Measure what SMUG's robustness theorem assumes and bounds, on one trained unrolled model.

Writes per-model rows (model, quantity, level, statistic, value, n_slices) to OUT: the largest
denoiser output norm on the clean test slices and under worst-case perturbations, the sensitivity
||f(y + e) - f(y)|| / ||e|| for random and worst-case (l2 PGD) e at each relative radius, and
Weighted SMUG's weight spread. See smug.evaluation.diagnostics.

Example:
  python scripts/diagnose.py --model results/models/smug/model.pt \
      --test @resources/splits/test_knee.txt --sens-maps resources/synthetic/sens_maps \
      --mask resources/masks/4x.npz --radii 0.01 0.02 0.05 --steps 5 \
      --out results/ablations/diagnostics/smug.csv
"""

import argparse
import sys

from smug.utils import add_compute_arguments, add_config_option, add_test_data_options, parse_args
from smug.utils import select_device, setup_compute, setup_logging
from smug.evaluation import diagnose_file


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model.pt of an unrolled network")
    add_test_data_options(parser)
    add_config_option(
        parser,
        "--radii",
        "ablations.diagnostics.radii",
        type=float,
        nargs="+",
        help="relative radii ||e|| / ||y||",
    )
    add_config_option(
        parser, "--steps", "ablations.diagnostics.steps", type=int, help="PGD steps of the worst case"
    )
    add_config_option(parser, "--batch-size", "evaluation.batch_size", type=int)
    add_config_option(parser, "--seed", "seeds.0", type=int)
    parser.add_argument("--out", required=True, help="output CSV")
    add_compute_arguments(parser)
    args = parse_args(parser, argv)

    setup_logging()
    try:
        setup_compute(args.threads)
        diagnose_file(
            model=args.model,
            test=args.test,
            mask=args.mask,
            sens_dir=args.sens_maps,
            test_slices=args.test_slices,
            radii=args.radii,
            steps=args.steps,
            batch_size=args.batch_size,
            seed=args.seed,
            out=args.out,
            device=select_device(args.device),
        )
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
