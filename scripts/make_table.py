#!/usr/bin/env python3
"""Collect every model's per-volume scores into results/tables/robustness.csv and wide tables.

robustness.csv is tidy: one row per (model, perturbation, level, metric) with mean, std and a
bootstrap 95 % interval over test volumes, the slice count, the config hash and the git commit.
The markdown/LaTeX files hold the paper-style tables (models x levels) per perturbation; the
shift summary compares in- and out-of-distribution scores per model and the gap TTT closes.

Example:
  python scripts/make_table.py --inputs results/eval/*.csv results/eval/ttt/*.csv --config-hash abc123 \
      --out results/tables/robustness.csv --markdown results/tables/robustness.md \
      --latex results/tables/robustness.tex --shift-summary results/tables/distribution_shift.csv
"""

import argparse
import sys

import pandas as pd

from smug.io import atomic_path
from smug.cli import add_config_option, parse_args
from smug.runtime import git_commit, setup_compute
from smug.tables import robustness_table, shift_summary, write_wide_tables


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="+", required=True, help="per-volume CSVs from scripts/evaluate.py")
    parser.add_argument("--config-hash", required=True, help="hash of the configuration (recorded per row)")
    add_config_option(parser, "--bootstrap", "evaluation.bootstrap", type=int, help="bootstrap resamples for the CIs")
    add_config_option(parser, "--seed", "seed", type=int)
    parser.add_argument("--out", required=True, help="tidy CSV")
    parser.add_argument("--markdown", required=True, help="wide tables, markdown")
    parser.add_argument("--latex", required=True, help="wide tables, LaTeX")
    parser.add_argument(
        "--shift-summary", required=True, help="in- vs out-of-distribution scores and the gap closed by TTT (CSV)"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parse_args(parser, argv)
    try:
        setup_compute(args.threads)
        frames = [pd.read_csv(path) for path in args.inputs]
        table = robustness_table(frames, args.config_hash, git_commit(), args.bootstrap, args.seed)
        write_wide_tables(table, args.markdown, args.latex)
        with atomic_path(args.shift_summary) as tmp:
            shift_summary(table).to_csv(tmp, index=False)
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False)
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
