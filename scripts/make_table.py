#!/usr/bin/env python3
"""Collect every model's per-volume scores, of every seed, into results/tables/robustness.csv and wide tables.

robustness.csv is tidy: one row per (model, perturbation, level, metric) with the mean and std over
seeds and test volumes, a 95 % interval accounting for both (smug.evaluation.statistics), the slice count, the
number of seeds, the config hash and the git commit. robustness_by_seed.csv holds each seed's own
row; scores.csv every per-volume score (the claims and comparisons read it). The markdown/LaTeX
files hold the paper-style tables (models x levels) per perturbation; the shift summary compares in-
and out-of-distribution scores per model and the gap TTT closes.

Example:
  python scripts/make_table.py --inputs results/eval/seed*/*.csv results/eval/seed*/ttt/*.csv \
      --config-hash abc123 --out results/tables/robustness.csv \
      --by-seed results/tables/robustness_by_seed.csv --scores results/tables/scores.csv \
      --markdown results/tables/robustness.md --latex results/tables/robustness.tex \
      --shift-summary results/tables/distribution_shift.csv
"""

import argparse
import sys

import pandas as pd

from smug.utils import atomic_path, parse_args, git_commit, setup_compute
from smug.reporting import robustness_by_seed, robustness_table, shift_summary, write_wide_tables


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", nargs="+", required=True, help="per-volume CSVs from scripts/evaluate.py")
    parser.add_argument("--config-hash", required=True, help="hash of the configuration (recorded per row)")
    parser.add_argument("--out", required=True, help="tidy CSV, over seeds and volumes")
    parser.add_argument("--by-seed", required=True, help="tidy CSV, one row per seed")
    parser.add_argument("--scores", required=True, help="every per-volume score, one CSV")
    parser.add_argument("--markdown", required=True, help="wide tables, markdown")
    parser.add_argument("--latex", required=True, help="wide tables, LaTeX")
    parser.add_argument(
        "--shift-summary",
        required=True,
        help="in- vs out-of-distribution scores and the gap closed by TTT (CSV)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parse_args(parser, argv)
    try:
        setup_compute(args.threads)
        frames = [pd.read_csv(path) for path in args.inputs]
        commit = git_commit()
        table = robustness_table(frames, args.config_hash, commit)
        by_seed = robustness_by_seed(frames, args.config_hash, commit)
        write_wide_tables(table, args.markdown, args.latex)
        with atomic_path(args.shift_summary) as tmp:
            shift_summary(table).to_csv(tmp, index=False)
        with atomic_path(args.scores) as tmp:
            pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
        with atomic_path(args.by_seed) as tmp:
            by_seed.to_csv(tmp, index=False)
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False)
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
