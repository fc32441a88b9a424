"""Wall time and peak memory of every pipeline job, from the TSV files of Snakemake's ``benchmark:``."""

from __future__ import annotations

import csv
import math
import os
import statistics
from pathlib import Path

from benchmarks.harness import Row

RULE_COLUMNS = ("rule", "runs", "seconds", "max_rss_mb")
# Columns every Snakemake benchmark TSV has (one row per run of the job).
SNAKEMAKE_BENCHMARK_COLUMNS = (
    "s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out", "mean_load", "cpu_time",
)  # fmt: skip


def rule_benchmarks(folder: str | os.PathLike) -> tuple[list[Row], Row]:
    """Wall time and memory of every pipeline job from Snakemake's ``benchmark:`` TSV files.

    Args:
        folder: holds ``*.tsv`` files (``results/benchmarks/rules``), one per job, one row per run
            (:data:`SNAKEMAKE_BENCHMARK_COLUMNS`; ``NA`` where Snakemake could not measure).

    Returns:
        ``(rows, total)``: per job ``rule`` (the file's stem), ``runs``, ``seconds`` (mean over runs)
        and ``max_rss_mb`` (peak over runs), slowest first; and a ``rule="total"`` row with the summed
        seconds and the peak RSS over all jobs (NaN when nothing was measured). A missing folder
        gives no rows.

    Raises:
        ValueError: a file that is not a Snakemake benchmark (the message names it).
    """
    folder = Path(folder)
    rows = []
    for path in sorted(folder.glob("*.tsv")) if folder.is_dir() else []:
        runs = _read_benchmark_tsv(path)
        seconds = [run["s"] for run in runs if math.isfinite(run["s"])]
        rss = [run["max_rss"] for run in runs if math.isfinite(run["max_rss"])]
        rows.append(
            {
                "rule": path.stem,
                "runs": len(runs),
                "seconds": statistics.fmean(seconds) if seconds else math.nan,
                "max_rss_mb": max(rss) if rss else math.nan,
            }
        )
    rows.sort(key=lambda row: -row["seconds"] if math.isfinite(row["seconds"]) else math.inf)
    measured_rss = [row["max_rss_mb"] for row in rows if math.isfinite(row["max_rss_mb"])]
    total = {
        "rule": "total",
        "runs": sum(row["runs"] for row in rows),
        "seconds": math.fsum(row["seconds"] for row in rows if math.isfinite(row["seconds"])),
        "max_rss_mb": max(measured_rss) if measured_rss else math.nan,
    }
    return rows, total


def _read_benchmark_tsv(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [c for c in ("s", "max_rss") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: not a Snakemake benchmark file (no column {', '.join(missing)}; "
                f"header {reader.fieldnames})"
            )
        runs = []
        for line, record in enumerate(reader, start=2):
            try:
                runs.append({key: _number(record[key]) for key in ("s", "max_rss")})
            except ValueError as exc:
                raise ValueError(f"{path}, line {line}: {exc}") from None
    if not runs:
        raise ValueError(f"{path}: a Snakemake benchmark file without any run")
    return runs


def _number(text: str | None) -> float:
    if text is None or text.strip() in ("", "NA", "-"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
