#!/usr/bin/env python3
"""Render the results tables as self-contained HTML pages, which `snakemake --report` shows inline.

Reads results/tables/robustness.csv, distribution_shift.csv and training_health.csv and writes one
page for each (smug.reporting.html): the robustness scores per perturbation with models grouped by
family, the in- vs out-of-distribution summary, and the health table with every unhealthy model
marked (the robustness page flags those models too). Each page is written atomically.

Example:
  python scripts/make_html_tables.py --robustness results/tables/robustness.csv \
      --distribution-shift results/tables/distribution_shift.csv \
      --training-health results/tables/training_health.csv \
      --robustness-html results/tables/robustness.html \
      --distribution-shift-html results/tables/distribution_shift.html \
      --training-health-html results/tables/training_health.html
"""

import argparse
import sys

from smug.utils import parse_args
from smug.reporting import write_html_tables


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--robustness", required=True, help="results/tables/robustness.csv")
    parser.add_argument("--distribution-shift", required=True, help="results/tables/distribution_shift.csv")
    parser.add_argument("--training-health", required=True, help="results/tables/training_health.csv")
    parser.add_argument("--robustness-html", required=True, help="output page of the robustness table")
    parser.add_argument("--distribution-shift-html", required=True, help="output page of the shift summary")
    parser.add_argument("--training-health-html", required=True, help="output page of the health table")
    args = parse_args(parser, argv)
    try:
        write_html_tables(
            robustness=args.robustness,
            distribution_shift=args.distribution_shift,
            training_health=args.training_health,
            robustness_out=args.robustness_html,
            distribution_shift_out=args.distribution_shift_html,
            training_health_out=args.training_health_html,
        )
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
