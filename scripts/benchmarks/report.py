"""The benchmarks' CSV tables and the summary scripts/bench.py prints."""

from __future__ import annotations

import csv
import io
import os
from typing import Sequence

from benchmarks.harness import Row
from smug.utils import atomic_path


def write_rows(path: str | os.PathLike, rows: Sequence[Row], columns: Sequence[str]) -> None:
    """Write ``rows`` as CSV with ``columns`` (a header even without rows), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def format_summary(
    throughput: Sequence[Row],
    targets: Sequence[Row],
    rules: Sequence[Row] = (),
    rules_total: Row | None = None,
) -> str:
    """A readable report: throughput per benchmark, each ratio against its target, the rule totals."""
    lines = ["throughput"]
    for row in throughput:
        lines.append(
            f"  {row['name']:<28} {row['seconds'] * 1e3:>10.3f} ms  {row['slices_per_s']:>10.1f} slices/s"
            + (f"  ({row['detail']})" if row["detail"] else "")
        )
    met = sum(bool(row["ok"]) for row in targets)
    lines.append(f"targets ({met} of {len(targets)} met)")
    for row in targets:
        verdict = "ok" if row["ok"] else "MISSED"
        lines.append(
            f"  {row['name']:<28} {row['measured']:>10.3g} {row['unit']:<12} target {row['goal']} "
            f"{row['target']:<6g} {verdict:<6}  {row['detail']}"
        )
    if rules_total is not None:
        lines.append(
            f"rules: {len(rules)} jobs, {rules_total['seconds']:.1f} s in all, "
            f"peak RSS {rules_total['max_rss_mb']:.1f} MB"
        )
        for row in rules[:5]:
            lines.append(f"  {row['rule']:<40} {row['seconds']:>10.1f} s {row['max_rss_mb']:>10.1f} MB")
    return "\n".join(lines)
