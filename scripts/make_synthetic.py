#!/usr/bin/env python3
"""Write the embedded synthetic dataset: phantom volumes in fastMRI's HDF5 layout.

Volumes go to ``{root}/{challenge}_{split}/{fname}`` (as fastMRI's archives unpack) and, for
multicoil data, their true sensitivity maps to ``{root}/sens_maps/{fname}``. The output is a pure
function of the arguments, byte for byte.

Example:
    make_synthetic.py --root resources/synthetic --challenge multicoil --anatomies knee brain \\
        --volumes train=6 val=2 test=4 --slices 8 --recon-size 64 64 --kspace-size 128 64 \\
        --coils 4 --noise-level 0.005 --seed 20261121
"""

import argparse
import sys

from tqdm import tqdm

from smug.utils import add_config_option, parse_args, setup_compute
from smug.data import CHALLENGES, PHANTOMS, sens_map_path, SPLITS, volume_paths, volume_plan
from smug.data import write_synthetic_volume


def parse_volumes(items: list[str]) -> dict[str, int]:
    """``["train=6", "val=2"]`` -> ``{"train": 6, "val": 2}``."""
    volumes: dict[str, int] = {}
    for item in items:
        split, sep, count = item.partition("=")
        if not sep or split not in SPLITS or not count.strip().isdigit():
            raise ValueError(f"--volumes entry {item!r} must be SPLIT=COUNT with SPLIT in {list(SPLITS)}")
        if split in volumes:
            raise ValueError(f"--volumes gives split {split!r} twice")
        volumes[split] = int(count)
    return volumes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", required=True, help="output directory")
    add_config_option(parser, "--challenge", "data.challenge", choices=CHALLENGES)
    add_config_option(
        parser,
        "--anatomies",
        "synthetic.anatomies",
        nargs="+",
        metavar="NAME",
        help=f"anatomy families, of {sorted(PHANTOMS)}",
    )
    add_config_option(
        parser,
        "--volumes",
        "synthetic.volumes",
        nargs="+",
        metavar="SPLIT=N",
        help="volumes per anatomy in each split",
    )
    add_config_option(parser, "--slices", "synthetic.slices_per_volume", type=int, help="slices per volume")
    add_config_option(
        parser,
        "--recon-size",
        "synthetic.recon_size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="target size, the recon region",
    )
    add_config_option(
        parser,
        "--kspace-size",
        "synthetic.kspace_size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="k-space grid, readout rows x phase-encode columns",
    )
    add_config_option(parser, "--coils", "synthetic.coils", type=int, help="coils of multicoil data")
    add_config_option(
        parser,
        "--noise-level",
        "synthetic.noise_level",
        type=float,
        help="k-space noise std relative to the maximum image magnitude",
    )
    add_config_option(parser, "--seed", "synthetic.seed", type=int, help="dataset seed")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    unknown = [name for name in args.anatomies if name not in PHANTOMS]
    if unknown:
        raise ValueError(f"--anatomies: unknown {unknown}; choose from {sorted(PHANTOMS)}")
    if args.slices < 1:
        raise ValueError(f"--slices must be at least 1, got {args.slices}")
    if min(args.recon_size) < 1:
        raise ValueError(f"--recon-size must be positive, got {args.recon_size}")
    if any(big < small for big, small in zip(args.kspace_size, args.recon_size)):
        raise ValueError(
            f"--kspace-size {args.kspace_size} must be at least --recon-size {args.recon_size} on both axes"
        )
    if args.challenge == "multicoil" and args.coils < 1:
        raise ValueError(f"--coils must be at least 1 for multicoil data, got {args.coils}")
    if not args.noise_level >= 0:
        raise ValueError(f"--noise-level must be non-negative, got {args.noise_level}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(build_parser(), argv)
    try:
        setup_compute(args.threads)
        check_args(args)
        plan = volume_plan(args.seed, parse_volumes(args.volumes), args.anatomies)
        paths = volume_paths(args.root, args.challenge, plan)
        multicoil = args.challenge == "multicoil"
        progress = tqdm(
            list(zip(plan, paths)), desc="synthetic volumes", unit="vol", disable=not sys.stderr.isatty()
        )
        for spec, path in progress:
            write_synthetic_volume(
                path,
                spec,
                challenge=args.challenge,
                num_slices=args.slices,
                recon_size=args.recon_size,
                kspace_size=args.kspace_size,
                num_coils=args.coils,
                noise_level=args.noise_level,
                sens_path=sens_map_path(args.root, spec.fname) if multicoil else None,
            )
    except (ValueError, OSError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
