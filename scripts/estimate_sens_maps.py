#!/usr/bin/env python3
"""Estimate ESPIRiT coil sensitivity maps of multicoil fastMRI volumes from their k-space centre.

Maps are estimated for the slices the training and evaluation scripts select (the same
``--slices N``: the central slices spread over the volumes; default all) and cropped to the recon
size, one file OUT_DIR/{fname} per volume with ``sens_maps`` (S, C, h, w) and ``slice_indices``.
A volume whose file already holds the same slices estimated with the same settings is skipped, so
an interrupted run resumes where it stopped.

Example:
  python scripts/estimate_sens_maps.py --volumes data/multicoil_train/*.h5 \\
      --out-dir results/sens_maps --slices 200 --num-acs 24 --device cuda --threads 4
"""

import argparse
import logging
import sys
from itertools import groupby
from pathlib import Path

from tqdm import tqdm

from smug.data import estimate_volume_maps, ESTIMATOR, inspect_volume, maps_file_matches, select_slices
from smug.data import write_sens_maps
from smug.utils import add_compute_arguments, add_espirit_options, parse_args, select_device, setup_compute
from smug.utils import setup_logging

LOG = logging.getLogger("smug")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--volumes",
        nargs="+",
        required=True,
        help="multicoil fastMRI HDF5 volumes, or @LIST: one path per line",
    )
    parser.add_argument("--out-dir", required=True, help="folder for the map files, one per volume")
    parser.add_argument("--slices", type=int, help="total central slices as selected for training")
    parser.add_argument(
        "--recon-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="map size (default: each file's reconSpace)",
    )
    add_espirit_options(parser)
    add_compute_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parse_args(build_parser(), argv)
    setup_logging()
    try:
        setup_compute(args.threads)
        if args.slices is not None and args.slices < 1:
            raise ValueError(f"--slices must be at least 1, got {args.slices}")
        if args.recon_size is not None and min(args.recon_size) < 1:
            raise ValueError(f"--recon-size must be positive, got {args.recon_size}")
        device = select_device(args.device)
        refs = select_slices(args.volumes, args.slices)
        infos = {ref.path: inspect_volume(ref.path) for ref in refs}
        single = [str(info.path) for info in infos.values() if info.challenge != "multicoil"]
        if single:
            raise ValueError(f"single-coil volumes {single}: sensitivity maps are for multicoil data")

        by_volume = [
            (path, [ref.slice_idx for ref in group]) for path, group in groupby(refs, key=lambda r: r.path)
        ]
        progress = tqdm(by_volume, desc="sensitivity maps", unit="vol", disable=not sys.stderr.isatty())
        for path, slice_indices in progress:
            recon_size = tuple(args.recon_size or infos[path].encoding.recon_size[:2])
            settings = {
                "estimator": ESTIMATOR,
                "num_acs": args.num_acs,
                "kernel_size": args.kernel_size,
                "threshold": args.threshold,
                "crop": args.crop,
                "recon_size": list(recon_size),
            }
            out = Path(args.out_dir) / path.name
            if maps_file_matches(out, slice_indices, settings):
                LOG.info("%s: maps up to date, skipped", out)
                continue
            maps = estimate_volume_maps(
                path,
                slice_indices,
                recon_size,
                args.num_acs,
                device=device,
                kernel_size=args.kernel_size,
                threshold=args.threshold,
                crop=args.crop,
            )
            write_sens_maps(out, maps, slice_indices, {**settings, "source": str(path)})
            LOG.info("%s: maps of %d slices written", out, len(slice_indices))
    except (ValueError, OSError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
