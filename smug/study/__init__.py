"""The study: which methods, attacks, claims and ablation variants the pipeline runs.

Plain data and checks, no torch: the only part of the library the Snakemake workflow imports.
"""
