#!/usr/bin/env python3
"""Validate every volume of a fastMRI folder and write its index (one CSV row per volume).

Reads only metadata (k-space shape, target, ISMRMRD header, attributes), so indexing thousands of
volumes takes seconds; a corrupt or wrong-challenge file stops the pipeline here, named.

Example:
  python scripts/index_fastmri.py --folder resources/fastmri/knee_multicoil_val \
      --challenge multicoil --volume-limits 256 64 1024 1024 \
      --out resources/fastmri/index/knee_multicoil_val.csv
"""

import argparse
import logging
import sys

from smug.utils import atomic_path, parse_args, setup_logging
from smug.data import add_volume_limits_argument, index_volumes, volume_limits_from


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", required=True, help="folder of fastMRI .h5 volumes")
    parser.add_argument("--challenge", required=True, choices=["singlecoil", "multicoil"])
    add_volume_limits_argument(parser)
    parser.add_argument("--out", required=True, help="index CSV")
    args = parse_args(parser, argv)

    setup_logging()
    try:
        limits = volume_limits_from(args)
        index = index_volumes(args.folder, args.challenge, limits)
        with atomic_path(args.out) as tmp:
            index.to_csv(tmp, index=False)
    except (ValueError, OSError) as exc:
        sys.exit(f"error: {exc}")
    counts = index.groupby("anatomy")["num_slices"].agg(["count", "sum"])
    for anatomy, row in counts.iterrows():
        logging.info("%s: %d %s volumes, %d slices", args.folder, row["count"], anatomy, row["sum"])


if __name__ == "__main__":
    main()
