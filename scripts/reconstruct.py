#!/usr/bin/env python3
"""Reconstruct your own fastMRI files with any saved method, in fastMRI's submission layout.

Writes OUT_DIR/{file name} per input volume with ``reconstruction`` float32 (slices, 320, 320), the
magnitude on the file's scale, so fastMRI's evaluate.py and leaderboard tooling accept it.
Train/val files (with a target) are undersampled retrospectively with --mask; test and challenge
files use their own stored mask and are never scored. Multicoil files without maps in --sens-maps
get ESPIRiT maps, estimated once and cached under --maps-cache. Nothing is written when an output
would replace an input (--out-dir holding the inputs, also through links) or when two inputs share a
file name (they would overwrite each other's output).

Examples:
  python scripts/reconstruct.py --model results/models/smug/model.pt \
      --files knee_multicoil_val/file1000000.h5 --mask resources/masks/4x.npz --out-dir recons/smug
  python scripts/reconstruct.py --model results/models/modl/model.pt --files @my_test_files.txt \
      --out-dir recons/modl --device cuda
"""

import argparse
import sys

from smug.utils import add_compute_arguments, add_config_option, add_espirit_options, parse_args
from smug.utils import select_device, setup_compute, setup_logging
from smug.evaluation import reconstruct_files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model.pt of any saved method")
    parser.add_argument(
        "--files", nargs="+", required=True, help="fastMRI HDF5 volumes, or @LIST: one path per line"
    )
    parser.add_argument("--out-dir", required=True, help="folder of the reconstructions, one file per volume")
    parser.add_argument("--mask", help="column mask .npz for files with a target (not needed for test files)")
    parser.add_argument(
        "--sens-maps", nargs="*", default=[], help="existing sensitivity-map files, or folders of them"
    )
    parser.add_argument("--maps-cache", help="folder for estimated maps (default: OUT_DIR/.sens_maps)")
    add_espirit_options(parser)
    parser.add_argument(
        "--batch-size", type=int, default=4, help="slices per forward pass (default %(default)s)"
    )
    add_config_option(parser, "--seed", "seeds.0", type=int, help="noise of randomised models")
    add_compute_arguments(parser)
    args = parse_args(parser, argv)

    setup_logging()
    try:
        setup_compute(args.threads)
        reconstruct_files(
            model=args.model,
            files=args.files,
            out_dir=args.out_dir,
            mask=args.mask,
            sens_dirs=args.sens_maps,
            maps_cache=args.maps_cache,
            espirit={
                "num_acs": args.num_acs,
                "kernel_size": args.kernel_size,
                "threshold": args.threshold,
                "crop": args.crop,
            },
            device=select_device(args.device),
            batch_size=args.batch_size,
            seed=args.seed,
        )
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
