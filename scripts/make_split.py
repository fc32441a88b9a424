#!/usr/bin/env python3
"""Write the volume list of one split (one path per line), from given volumes or a fastMRI index.

The training, attack and evaluation scripts read the list as ``@LIST``. With ``--index``, volumes
``START .. START+COUNT`` (file-name order over all the indexes given, of ``--anatomy`` if given)
are chosen, so validation and test volumes drawn from the same fastMRI folder stay disjoint.

Examples:
  python scripts/make_split.py --volumes resources/synthetic/multicoil_test/*.h5 \
      --volume-limits 256 64 1024 1024 --out resources/splits/test_knee.txt
  python scripts/make_split.py --index resources/fastmri/index/knee_multicoil_val.csv \
      --start 0 --num-volumes 10 --anatomy knee --out resources/splits/val_knee.txt
"""

import argparse
import sys

import pandas as pd

from smug.utils import parse_args
from smug.data import add_volume_limits_argument, select_volumes, validate_volume, volume_limits_from
from smug.data import write_volume_list


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--volumes", nargs="+", help="the split's volumes, as they are")
    source.add_argument(
        "--index",
        nargs="+",
        help="index CSV(s) from scripts/index_fastmri.py (batches of one split together)",
    )
    parser.add_argument("--start", type=int, default=0, help="first volume taken from the index (default 0)")
    parser.add_argument("--num-volumes", type=int, help="volumes taken from the index (default: to the end)")
    parser.add_argument("--anatomy", help="take only volumes of this anatomy (knee, brain)")
    add_volume_limits_argument(parser)
    parser.add_argument("--out", required=True, help="list file to write")
    args = parse_args(parser, argv)

    try:
        if args.index is not None:
            index = pd.concat([pd.read_csv(path) for path in args.index], ignore_index=True)
            volumes = select_volumes(index, args.start, args.num_volumes, args.anatomy)
        else:
            # Volumes that no index has validated are validated here, before any job reads them.
            limits = volume_limits_from(args)
            volumes = sorted(args.volumes)
            for volume in volumes:
                validate_volume(volume, limits)
        write_volume_list(args.out, volumes)
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")
    print(f"{args.out}: {len(volumes)} volumes")


if __name__ == "__main__":
    main()
