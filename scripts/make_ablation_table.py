#!/usr/bin/env python3
"""Collect the ablation experiments into results/tables/ablations.csv (smug.reporting.ablation_tables).

Reads every ablation model's per-volume scores, the diagnostics of the models that were diagnosed
and the ablation health table; writes one tidy row per (experiment, model, perturbation, level,
metric) naming each model's method, setting, role and health.

Example:
  python scripts/make_ablation_table.py --experiments experiments.json \
      --scores results/ablations/eval/seed*/*.csv --diagnostics results/ablations/diagnostics/seed*/*.csv \
      --health results/tables/ablation_health.csv --config-hash abc123 --out results/tables/ablations.csv
"""

import argparse
import sys

import pandas as pd

from smug.reporting import ablation_table
from smug.utils import load_spec, parse_args, atomic_path, git_commit, setup_compute


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--experiments",
        type=load_spec,
        required=True,
        help="JSON {experiment: [{model, method, setting, role, diagnosed}, ...]} (inline or a file)",
    )
    parser.add_argument("--scores", nargs="+", required=True, help="per-volume CSVs from scripts/evaluate.py")
    parser.add_argument("--diagnostics", nargs="*", default=[], help="CSVs from scripts/diagnose.py")
    parser.add_argument("--health", required=True, help="the ablation models' training-health table")
    parser.add_argument("--config-hash", required=True, help="hash of the configuration (recorded per row)")
    parser.add_argument("--out", required=True, help="tidy CSV")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parse_args(parser, argv)
    try:
        setup_compute(args.threads)
        table = ablation_table(
            args.experiments,
            [pd.read_csv(path) for path in args.scores],
            [pd.read_csv(path) for path in args.diagnostics],
            pd.read_csv(args.health),
            args.config_hash,
            git_commit(),
        )
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
