#!/usr/bin/env python3
"""Draw the robustness figures from the table, the saved reconstructions and the attack files.

Writes into OUT_DIR (PNG and PDF each):
  robustness_curves  PSNR/SSIM vs eps per model for each white-box attack (solid) and random noise of
                     the same norm (dashed), with 95 % bands over seeds and test volumes, one row of panels per model family
  acceleration_shift PSNR/SSIM vs acceleration (the training acceleration marked, --train-acceleration)
  unroll_shift       PSNR/SSIM vs number of unrolls (unrolled models; --train-unrolls marked)
  image_grid         one test slice: ground truth, each model clean and attacked, error maps, PSNR/SSIM per tile
  perturbations      worst-case perturbations in k-space and image space
  anatomy_shift      shifted- vs training-anatomy score per model, arrows for test-time training
  small_features     crops around inserted small features, each marked detected or missed

Example:
  python scripts/make_figures.py --table results/tables/robustness.csv --recon-root results/recons \
      --models zero_filled modl smug --grid-attack pgd_kspace_linf --grid-level 0.02 \
      --attack-files results/attacks/modl/pgd_kspace_linf.h5 --out-dir results/figures \
      --train-acceleration 4 --train-unrolls 4
"""

import argparse
import sys

from smug.reporting import draw_all_figures
from smug.utils import parse_args, setup_compute


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--table", required=True, help="results/tables/robustness.csv")
    parser.add_argument("--recon-root", required=True, help="folder with {model}/{condition}/{level}/ recons")
    parser.add_argument("--models", nargs="+", required=True, help="models shown in the image grid, in order")
    parser.add_argument("--grid-attack", required=True, help="attack shown in the image grid")
    parser.add_argument("--grid-level", type=float, required=True, help="its eps")
    parser.add_argument(
        "--attack-files", nargs="*", default=[], help="attack files whose strongest level is drawn"
    )
    parser.add_argument("--out-dir", required=True)
    parser.add_argument(
        "--train-acceleration", type=float, help="training acceleration, marked on acceleration_shift"
    )
    parser.add_argument(
        "--train-unrolls", type=int, help="training number of unrolls, marked on unroll_shift"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parse_args(parser, argv)
    try:
        setup_compute(args.threads)
        draw_all_figures(
            table=args.table,
            recon_root=args.recon_root,
            models=args.models,
            grid_attack=args.grid_attack,
            grid_level=args.grid_level,
            attack_files=args.attack_files,
            out_dir=args.out_dir,
            train_acceleration=args.train_acceleration,
            train_unrolls=args.train_unrolls,
        )
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
