#!/usr/bin/env python3
"""Training-health table: one row per model over its seeds, with the checks it fails
(results/tables/training_health.csv), and one row per model and seed (--by-seed).

Reads every method's saved record of every seed (optimiser steps, final lam, validation PSNR per
epoch and the references it was validated against) and every evaluated model's per-volume scores,
and decides whether each model is a working reconstruction on every seed, and whether its seeds
agree (see smug.reporting.health for the checks). A model's name and seed come from where its model.pt lies
(results/models/{model}/seed{seed}/model.pt; a method no seed changes: .../{model}/model.pt, used
for every seed); an evaluation's from its rows.

Example:
  python scripts/make_health_table.py --records results/models/*/seed*/model.pt \
      results/models/cs_*/model.pt results/models/zero_filled/model.pt \
      --scores results/eval/seed*/*.csv --train-acceleration 4 --max-gap-to-cs-tv 3 \
      --max-seed-gap 1 --out results/tables/training_health.csv \
      --by-seed results/tables/training_health_by_seed.csv
"""

import argparse
import sys

import pandas as pd

from smug.reporting import health_by_seed, health_summary, unhealthy
from smug.utils import atomic_path, parse_args, setup_logging, setup_compute
from smug.models import read_record
from smug.study import model_name, seed_of_path

# The weights are not needed, and the untrained/CS records hold no history: drop what is heavy.
_HEAVY_KEYS = ("state_dict", "generator")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records", nargs="+", required=True, help="model.pt of every method and seed (and the denoiser)"
    )
    parser.add_argument("--scores", nargs="+", required=True, help="per-volume CSVs from scripts/evaluate.py")
    parser.add_argument("--train-acceleration", type=float, required=True, help="acceleration of training")
    parser.add_argument(
        "--max-gap-to-cs-tv", type=float, required=True, help="dB an unrolled model may score below CS-TV"
    )
    parser.add_argument(
        "--max-seed-gap",
        type=float,
        required=True,
        help="dB a seed may lie below the median of the model's seeds",
    )
    parser.add_argument("--out", required=True, help="output CSV, one row per model")
    parser.add_argument("--by-seed", required=True, help="output CSV, one row per model and seed")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parse_args(parser, argv)

    setup_logging()
    try:
        setup_compute(args.threads)
        scores = {}
        for path in args.scores:
            table = pd.read_csv(path)
            for (model, seed), rows in table.groupby(["model", "seed"], sort=False):
                scores[(model, int(seed))] = rows
        seeds = sorted({seed for _, seed in scores})
        records = {}
        for path in args.records:
            record = {k: v for k, v in read_record(path).items() if k not in _HEAVY_KEYS}
            seed = seed_of_path(path)
            for each in seeds if seed is None else [seed]:
                records[(model_name(path), each)] = record
        by_seed = health_by_seed(records, scores, args.train_acceleration, args.max_gap_to_cs_tv)
        table = health_summary(by_seed, args.max_seed_gap)
        with atomic_path(args.by_seed) as tmp:
            by_seed.to_csv(tmp, index=False, float_format="%.6g")
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        for model, failed in unhealthy(table):
            print(f"unhealthy: {model}: {failed}", file=sys.stderr)
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
