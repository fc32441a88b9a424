#!/usr/bin/env python3
"""Score a trained network adapted to each test measurement by test-time training (TTT).

For every batch of test slices (one slice per batch in the study), a copy of the network is
fine-tuned on that measurement alone with the self-supervised k-space loss ||y - A f(y)||_1 / ||y||_1
on part of the sampled columns; the rest are held out and the weights that predict them best are
kept (smug.evaluation.ttt). Run on the other anatomy's test volumes, the rows (perturbation
ttt_anatomy_shift) show how much of the anatomy-shift gap TTT closes.

Example:
  python scripts/evaluate_ttt.py --model results/models/modl/model.pt \
      --test @resources/splits/test_brain.txt --sens-maps resources/synthetic/sens_maps \
      --mask resources/masks/4x.npz --settings '{"steps": 10, "lr": 1e-4, "holdout_fraction": 0.05, "patience": 3}' \
      --out results/eval/ttt/modl.csv
"""

import argparse
import sys

from smug.evaluation import evaluate_test_time_training
from smug.utils import add_compute_arguments, add_config_option, add_test_data_options, load_spec, parse_args
from smug.utils import select_device, setup_compute, setup_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model.pt of a trained network")
    add_test_data_options(parser, mask_help="column mask .npz of the measurements")
    parser.add_argument(
        "--settings",
        required=True,
        type=load_spec,
        help="JSON {steps, lr, holdout_fraction, patience[, check_every]}",
    )
    add_config_option(
        parser, "--batch-size", "evaluation.ttt.batch_size", type=int, help="slices adapted together"
    )
    add_config_option(parser, "--seed", "seeds.0", type=int)
    parser.add_argument("--out", required=True, help="per-volume metrics CSV")
    add_compute_arguments(parser)
    args = parse_args(parser, argv)

    setup_logging()
    try:
        setup_compute(args.threads)
        evaluate_test_time_training(
            model=args.model,
            test=args.test,
            mask=args.mask,
            sens_dir=args.sens_maps,
            test_slices=args.test_slices,
            settings=args.settings,
            batch_size=args.batch_size,
            seed=args.seed,
            out=args.out,
            device=select_device(args.device),
        )
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
