#!/usr/bin/env python3
"""Training-health table: one row per model, with the checks it fails (results/tables/training_health.csv).

Reads every method's saved record (optimiser steps, final lam, validation PSNR per epoch and the
references it was validated against) and every evaluated model's per-volume scores, and decides
whether each model is a working reconstruction (see smug.health for the checks). A model's name is
the folder of its model.pt and the file name of its evaluation CSV.

Example:
  python scripts/make_health_table.py --records results/models/*/model.pt \
      --scores results/eval/*.csv --train-acceleration 4 --max-gap-to-cs-tv 3 \
      --out results/tables/training_health.csv
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from smug.health import health_table, unhealthy
from smug.io import atomic_path
from smug.cli import parse_args, setup_logging
from smug.method_files import read_record
from smug.runtime import setup_compute

# The weights are not needed, and the untrained/CS records hold no history: drop what is heavy.
_HEAVY_KEYS = ("state_dict", "generator")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", nargs="+", required=True, help="model.pt of every method (and the denoiser)")
    parser.add_argument("--scores", nargs="+", required=True, help="per-volume CSVs from scripts/evaluate.py")
    parser.add_argument("--train-acceleration", type=float, required=True, help="acceleration of training")
    parser.add_argument(
        "--max-gap-to-cs-tv", type=float, required=True, help="dB an unrolled model may score below CS-TV"
    )
    parser.add_argument("--out", required=True, help="output CSV")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parse_args(parser, argv)

    setup_logging()
    try:
        setup_compute(args.threads)
        records = {}
        for path in args.records:
            record = read_record(path)
            records[Path(path).parent.name] = {k: v for k, v in record.items() if k not in _HEAVY_KEYS}
        scores = {Path(path).stem: pd.read_csv(path) for path in args.scores}
        table = health_table(records, scores, args.train_acceleration, args.max_gap_to_cs_tv)
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        for model, failed in unhealthy(table):
            print(f"unhealthy: {model}: {failed}", file=sys.stderr)
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
