#!/usr/bin/env python3
"""Compute the perturbations of one attack against one model, at every strength of its eps grid.

White-box PGD attacks differentiate through the model (data consistency included; randomised
models with expectation over transformation). Random-noise "attacks" need no model and are
computed once for all models (omit --model). The output HDF5 holds one group per eps with the
perturbations of every test slice and the attack's settings as attributes (smug.attacks.files.save_attack).

Example:
  python scripts/attack.py --attack pgd_kspace_linf --eps 0.005 0.01 0.02 --steps 10 \
      --model results/models/smug/model.pt --test resources/synthetic/multicoil_test/file1*.h5 \
      --sens-maps resources/synthetic/sens_maps --mask resources/masks/4x.npz \
      --out results/attacks/smug/pgd_kspace_linf.h5
"""

import argparse
import sys

from smug.attacks import compute_attack
from smug.utils import add_compute_arguments, add_config_option, add_memory_arguments, add_test_data_options
from smug.utils import parse_args
from smug.utils import select_device, setup_compute, setup_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attack", required=True, help="name in smug.study.attacks.ATTACKS")
    parser.add_argument("--eps", type=float, nargs="+", required=True, help="attack strengths")
    parser.add_argument("--model", help="model.pt to attack (not needed for random noise)")
    add_test_data_options(parser)
    add_config_option(parser, "--steps", "evaluation.pgd.steps", type=int, help="PGD iterations")
    parser.add_argument("--step-factor", type=float, help="PGD step = factor * eps (default eps/3)")
    add_config_option(
        parser,
        "--random-start",
        "evaluation.pgd.random_start",
        action=argparse.BooleanOptionalAction,
        help="start PGD at a random point of the ball",
    )
    add_config_option(parser, "--loss-target", "evaluation.pgd.loss_target", choices=["gt", "clean"])
    add_config_option(
        parser,
        "--eot-samples",
        "evaluation.pgd.eot_samples",
        type=int,
        help="noise draws per gradient (randomised models)",
    )
    add_config_option(parser, "--batch-size", "evaluation.batch_size", type=int)
    add_config_option(parser, "--seed", "seeds.0", type=int)
    parser.add_argument("--out", required=True, help="output .h5")
    add_compute_arguments(parser)
    add_memory_arguments(parser)
    args = parse_args(parser, argv)

    setup_logging()
    try:
        setup_compute(args.threads)
        options = {k: v for k, v in vars(args).items() if k not in ("threads", "sens_maps")}
        compute_attack(**{**options, "sens_dir": args.sens_maps, "device": select_device(args.device)})
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
