#!/usr/bin/env python3
"""Score one model on the test slices under every condition of the robustness study.

Conditions: clean; each attack file given (its perturbations re-applied, one row per eps); each
trained min-max generator given (replayed as a transfer attack); each mask given (sampling-rate
shift); for unrolled models, each number of unrolls (unrolling shift); the volumes of another
anatomy (--shift-test: anatomy shift); and small features inserted into the test slices
(--small-features: their recovery). Writes fastMRI-style
per-volume NMSE/PSNR/SSIM rows to OUT and every reconstruction to RECON_DIR/{condition}/{level}/
as fastMRI-layout HDF5 (key "reconstruction"), with the targets in RECON_DIR/target/.

Example:
  python scripts/evaluate.py --model results/models/smug/model.pt \
      --test resources/synthetic/multicoil_test/file1*.h5 --sens-maps resources/synthetic/sens_maps \
      --train-mask resources/masks/4x.npz --masks resources/masks/*.npz \
      --attacks results/attacks/smug/*.h5 results/attacks/noise/*.h5 \
      --generators results/models/unet_adv/model.pt --unrolls 1 2 4 8 16 \
      --shift-test @resources/splits/test_brain.txt \
      --small-features '{"num_features": 2, "size": 3, "contrast": 0.3, "kind": "square"}' \
      --out results/eval/smug.csv --recon-dir results/recons/smug
"""

import argparse
import sys

from smug.evaluation import evaluate_model
from smug.utils import add_compute_arguments, add_config_option, add_test_data_options, load_spec, parse_args
from smug.utils import select_device, setup_compute, setup_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model.pt of any reconstruction method")
    add_test_data_options(parser, mask_help=None)
    parser.add_argument("--train-mask", required=True, help="mask of the training acceleration")
    parser.add_argument("--masks", nargs="*", default=[], help="masks of the sampling-rate shift")
    parser.add_argument("--attacks", nargs="*", default=[], help="attack files from scripts/attack.py")
    parser.add_argument("--generators", nargs="*", default=[], help="min-max models whose generator attacks")
    parser.add_argument("--unrolls", type=int, nargs="*", default=[], help="unroll counts (unrolled models)")
    parser.add_argument("--shift-test", nargs="*", default=[], help="volumes of the other anatomy, or @LIST")
    parser.add_argument(
        "--small-features",
        type=load_spec,
        help="JSON {num_features, size, contrast, kind} of the feature test",
    )
    add_config_option(parser, "--batch-size", "evaluation.batch_size", type=int)
    add_config_option(parser, "--seed", "seeds.0", type=int)
    parser.add_argument("--out", required=True, help="per-volume metrics CSV")
    parser.add_argument("--recon-dir", required=True, help="folder for reconstructions")
    add_compute_arguments(parser)
    args = parse_args(parser, argv)

    setup_logging()
    try:
        setup_compute(args.threads)
        evaluate_model(
            model=args.model,
            test=args.test,
            masks=args.masks,
            train_mask=args.train_mask,
            sens_dir=args.sens_maps,
            test_slices=args.test_slices,
            attack_files=args.attacks,
            generators=args.generators,
            unrolls=args.unrolls,
            shift_test=args.shift_test,
            small_features=args.small_features,
            batch_size=args.batch_size,
            seed=args.seed,
            out=args.out,
            recon_dir=args.recon_dir,
            device=select_device(args.device),
        )
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
