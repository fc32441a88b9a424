#!/usr/bin/env python3
"""Write the k-space undersampling masks of an experiment, one .npz per acceleration, and a figure.

For each (acceleration, centre fraction) pair the mask function of ``--mask-type`` is called once
with the k-space shape (H, W, 2) and ``--seed``; the same column mask then serves every slice.
Each ``OUT_DIR/{acc}x.npz`` holds ``mask`` (W,) bool and how it was made (see
``smug.mri.masks.save_mask``); the figure shows the 2-D sampling patterns.

Example:
    make_masks.py --mask-type variable_density --accelerations 4 8 --center-fractions 0.08 0.04 \\
        --width 368 --height 640 --seed 0 --out-dir resources/masks \\
        --figure results/figures/masks.png
"""

import argparse
import sys
from pathlib import Path

from smug.mri import MASK_TYPES, column_mask, create_mask_for_mask_type, save_mask
from smug.reporting import plot_masks
from smug.utils import parse_args, setup_compute


def _acceleration(text: str) -> int | float:
    value = float(text)
    # Integral accelerations stay ints: equispaced/magic masks step by them, and file names
    # read "4x", not "4.0x".
    return int(value) if value.is_integer() else value


def read_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mask-type", required=True, help=f"one of: {', '.join(MASK_TYPES)}")
    parser.add_argument(
        "--accelerations",
        type=_acceleration,
        nargs="+",
        required=True,
        help="nominal undersampling factors, e.g. 2 4 8",
    )
    parser.add_argument(
        "--center-fractions",
        type=float,
        nargs="+",
        required=True,
        help="fully sampled centre fraction for each acceleration (same length), e.g. 0.16 0.08 0.04",
    )
    parser.add_argument("--width", type=int, required=True, help="k-space columns W")
    parser.add_argument("--height", type=int, required=True, help="k-space rows H (figure only)")
    parser.add_argument("--seed", type=int, required=True, help="seed passed to every mask call")
    parser.add_argument("--out-dir", type=Path, required=True, help="directory for {acc}x.npz")
    parser.add_argument(
        "--figure",
        type=Path,
        required=True,
        help="PNG path of the figure; a PDF with the same stem is written beside it",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    return parse_args(parser, argv)


def make_masks(args: argparse.Namespace) -> None:
    if len(args.accelerations) != len(args.center_fractions):
        raise ValueError(
            f"--accelerations {args.accelerations} and --center-fractions "
            f"{args.center_fractions} must have the same length"
        )
    if args.width < 1 or args.height < 1:
        raise ValueError(f"--width {args.width} and --height {args.height} must be positive")
    if args.figure.suffix.lower() != ".png":
        raise ValueError(f"--figure {args.figure} must end in .png")

    # Build every mask before writing any, so a bad pair leaves no partial set behind.
    records = []
    for acceleration, center_fraction in zip(args.accelerations, args.center_fractions):
        mask_func = create_mask_for_mask_type(args.mask_type, [center_fraction], [acceleration])
        mask, num_low_frequencies = mask_func((args.height, args.width, 2), seed=args.seed)
        records.append((acceleration, center_fraction, column_mask(mask).numpy(), num_low_frequencies))

    masks, titles = {}, {}
    for acceleration, center_fraction, columns, num_low_frequencies in records:
        label = f"{acceleration}x"
        save_mask(
            args.out_dir / f"{label}.npz",
            columns,
            num_low_frequencies=num_low_frequencies,
            acceleration=acceleration,
            center_fraction=center_fraction,
            mask_type=args.mask_type,
            seed=args.seed,
        )
        masks[label] = columns
        titles[label] = (
            f"{args.mask_type}: nominal {acceleration}x, "
            f"realised {columns.size / columns.sum():.2f}x, {num_low_frequencies} centre lines"
        )
    plot_masks(masks, args.height, args.figure, args.figure.with_suffix(".pdf"), titles)


def main(argv: list[str] | None = None) -> None:
    args = read_args(argv)
    try:
        setup_compute(args.threads)
        make_masks(args)
    except (ValueError, OSError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
