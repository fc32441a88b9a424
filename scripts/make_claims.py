#!/usr/bin/env python3
r"""Test the studies' claims on the per-volume scores of every seed: the claims table, the paired
comparisons, a forest plot, an HTML page and the README's claims section.

Reads the per-volume long table (columns model, perturbation, level, metric, seed, volume, value,
n_slices; every seed's model scored on the same volumes) and the claims (the config's `claims:`
list, smug/study/claims.py). Writes the paired differences of every method against MoDL and of SMUG
against every other unrolled network under each shared condition (--comparisons), one row per
claim with its effect, 95 % interval over seeds and volumes and verdict (--out), the forest plot
(--figure, and --figure-pdf when given), the HTML page (--html) and the markdown section (--markdown)
with the line 'N of M paired comparisons decided'. Claims on the ablations read --ablation-scores;
without it their verdict is 'not run'. Every output is written atomically.

--claims takes inline JSON (a list of claims, one claim, or a mapping with a `claims` list; one
claim per word also works, as a Snakemake rule passes a list), or a JSON/YAML file holding the same,
e.g. config/config.yaml itself.

Example:
  python scripts/make_claims.py --scores results/tables/scores.csv --claims config/config.yaml \
      --comparisons results/tables/comparisons.csv --out results/tables/claims.csv \
      --html results/tables/claims.html --figure results/figures/claims.png \
      --markdown results/tables/claims.md
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

from smug.utils import parse_args, atomic_path, write_text_atomic, load_json_strict, load_yaml_strict


def read_claims(words: list[str]) -> list[dict]:
    """The claims of --claims: each word inline JSON or a JSON/YAML file, holding a list of claims,
    one claim (a mapping with an ``id``) or a mapping with a ``claims`` list."""
    claims: list[dict] = []
    for word in words:
        inline = word.lstrip().startswith(("{", "["))
        if not inline and not Path(word).is_file():
            raise ValueError(f"--claims {word[:80]!r} is neither inline JSON nor an existing file")
        text = word if inline else Path(word).read_text(encoding="utf-8")
        source = "inline --claims" if inline else word
        try:
            data = (
                load_json_strict(text, source)
                if inline or word.endswith(".json")
                else load_yaml_strict(text, source)
            )
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot parse --claims {word[:80]!r}: {exc}") from None
        if isinstance(data, dict) and "claims" in data:
            data = data["claims"]
        elif isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise ValueError(f"--claims {word[:80]!r} holds no list of claims")
        claims += data
    return claims


def read_scores(paths: list[str], what: str) -> pd.DataFrame:
    """The per-volume tables of ``paths``, concatenated."""
    frames = [pd.read_csv(path) for path in paths]
    if not frames:
        raise ValueError(f"no {what} given")
    return pd.concat(frames, ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scores",
        nargs="+",
        required=True,
        help="per-volume scores of every seed (results/tables/scores.csv)",
    )
    parser.add_argument(
        "--ablation-scores",
        nargs="*",
        help="per-volume scores of the ablation models (claims with source_table: ablations)",
    )
    parser.add_argument(
        "--backbone-scores",
        nargs="*",
        help="per-volume scores of the backbones' models (claims with source_table: backbones)",
    )
    parser.add_argument(
        "--claims",
        nargs="+",
        required=True,
        help="the claims: inline JSON, or a JSON/YAML file (the config's claims:)",
    )
    parser.add_argument("--comparisons", required=True, help="output: paired comparisons (CSV)")
    parser.add_argument("--out", required=True, help="output: the claims table (CSV)")
    parser.add_argument("--html", required=True, help="output: the claims table as an HTML page")
    parser.add_argument("--figure", required=True, help="output: the forest plot (PNG)")
    parser.add_argument("--figure-pdf", help="output: the forest plot as PDF too (optional)")
    parser.add_argument("--markdown", required=True, help="output: the README's claims section (markdown)")
    args = parse_args(parser, argv)
    try:
        # Imported here so that --help and argument errors stay fast.
        from smug.reporting import plot_claims, write_claims_html
        from smug.reporting import claims_markdown, decided_line
        from smug.evaluation import comparison_pairs, comparisons, evaluate_claims

        claims = read_claims(args.claims)
        scores = read_scores(args.scores, "--scores")
        ablation = read_scores(args.ablation_scores, "--ablation-scores") if args.ablation_scores else None
        backbone = read_scores(args.backbone_scores, "--backbone-scores") if args.backbone_scores else None
        table = evaluate_claims(scores, claims, ablation, backbone)
        pairs = comparison_pairs(scores["model"].drop_duplicates())
        paired = comparisons(scores, pairs)
        with atomic_path(args.comparisons) as tmp:
            paired.to_csv(tmp, index=False)
        plot_claims(table, args.figure, args.figure_pdf)
        write_claims_html(table, args.html, decided_line(paired))
        write_text_atomic(args.markdown, claims_markdown(table, paired))
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False)
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
