#!/usr/bin/env python3
"""Draw one ablation experiment's figure from results/tables/ablations.csv (smug.reporting.ablation_figures).

Example:
  python scripts/make_ablation_figure.py --table results/tables/ablations.csv --experiment sigma \
      --kind tradeoff --png results/figures/ablations/sigma.png --pdf results/figures/ablations/sigma.pdf
"""

import argparse
import sys

import pandas as pd

from smug.reporting import FIGURE_KINDS, plot_experiment
from smug.utils import parse_args, setup_compute


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--table", required=True, help="results/tables/ablations.csv")
    parser.add_argument("--experiment", required=True, help="an experiment of ablations.experiments")
    parser.add_argument("--kind", required=True, choices=FIGURE_KINDS, help="the figure's kind")
    parser.add_argument("--png", required=True, help="output PNG")
    parser.add_argument("--pdf", required=True, help="output PDF")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parse_args(parser, argv)
    try:
        setup_compute(args.threads)
        plot_experiment(pd.read_csv(args.table), args.experiment, args.kind, args.png, args.pdf)
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
