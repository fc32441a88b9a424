"""The results tables as HTML pages for the Snakemake report: every model's row, rounded numbers,
escaped text, and the unhealthy models marked."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from smug.evaluation import VolumeStack, volume_rows
from smug.reporting import COLUMNS as HEALTH_COLUMNS, health_html, robustness_html, robustness_table
from smug.reporting import shift_html, shift_summary, unhealthy_models
from smug.study import method_label


class _Rows(HTMLParser):
    """Every table row of a page: its section (the last ``<h2>``), class, and cells (text, class)."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self.section = None
        self._heading = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h2":
            self._heading = ""
        elif tag == "tr":
            self._row = {"section": self.section, "class": attrs.get("class"), "cells": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"text": "", "class": attrs.get("class"), "tag": tag}
        elif tag == "span" and self._cell is not None and attrs.get("class") == "name":
            self._cell["text"] += " | "

    def handle_endtag(self, tag):
        if tag == "h2":
            self.section, self._heading = self._heading, None
        elif tag in ("td", "th") and self._cell is not None:
            self._row["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data
        if self._cell is not None:
            self._cell["text"] += data


def parse_rows(page: str) -> list[dict]:
    parser = _Rows()
    parser.feed(page)
    return parser.rows


def model_rows(page: str, model: str) -> list[dict]:
    """The body rows whose header names ``model`` (display name and file name)."""
    key = f"{method_label(model)}"
    return [
        r
        for r in parse_rows(page)
        if r["cells"]
        and r["cells"][0]["tag"] == "th"
        and r["cells"][0]["text"].endswith(f"| {model}")
        and r["cells"][0]["text"].startswith(key)
    ]


def _frames(rng, models, perturbations):
    frames = []
    for model, noise in models.items():
        for perturbation, level in perturbations:
            volumes = {}
            for v in range(3):
                stack = VolumeStack()
                for s in range(2):
                    target = rng.random((8, 8))
                    stack.slices.append(s)
                    stack.target.append(target)
                    stack.recon.append(target + noise * rng.standard_normal((8, 8)))
                volumes[f"file{v}.h5"] = stack
            frames.append(pd.DataFrame(volume_rows(volumes, model, perturbation, level)).assign(seed=0))
    return frames


MODELS = {"modl": 0.05, "smug": 0.03, "unet": 0.08, "cs_tv": 0.1, "zero_filled": 0.2}
PERTURBATIONS = [("clean", 0.0), ("pgd_kspace_linf", 0.01), ("pgd_kspace_linf", 0.02), ("acceleration", 8.0)]


@pytest.fixture(scope="module")
def table():
    frames = _frames(np.random.default_rng(0), MODELS, PERTURBATIONS)
    return robustness_table(frames, "hash123", "commit456")


def test_robustness_page_has_every_models_row_in_every_section_with_rounded_scores(table):
    page = robustness_html(table)
    rows = parse_rows(page)
    sections = {r["section"] for r in rows if r["section"]}
    assert sections == {"clean", "pgd_kspace_linf — white-box (EOT)", "acceleration"}
    for model in MODELS:
        found = model_rows(page, model)
        assert {r["section"] for r in found} == sections, model
    # The PSNR cell of SMUG at eps 0.02 is its mean ± std to two decimals, with a true minus sign.
    cell = table[(table["model"] == "smug") & (table["perturbation"] == "pgd_kspace_linf")]
    cell = cell[(cell["level"] == 0.02) & (cell["metric"] == "PSNR")].iloc[0]
    [smug_row] = [r for r in model_rows(page, "smug") if r["section"].startswith("pgd_kspace_linf")]
    texts = [c["text"] for c in smug_row["cells"][1:]]
    assert f"{cell['mean']:.2f} ± {cell['std']:.2f}" in texts
    # Column titles name the levels as a reader does.
    assert "eps 0.02" in page and "8x" in page
    assert "hash123" in page and "commit456" in page


def test_best_model_of_each_column_is_bold(table):
    page = robustness_html(table)
    clean = [
        r
        for r in parse_rows(page)
        if r["section"] == "clean" and r["cells"][0]["tag"] == "th" and len(r["cells"]) > 1
    ]
    psnr = {r["cells"][0]["text"].split(" | ")[-1]: r["cells"][1] for r in clean}
    part = table[(table["perturbation"] == "clean") & (table["metric"] == "PSNR")]
    best = part.loc[part["mean"].idxmax(), "model"]
    assert psnr[best]["class"] == "best"
    assert all(c["class"] != "best" for m, c in psnr.items() if m != best)


def test_rows_are_grouped_by_family_and_unhealthy_models_flagged(table):
    page = robustness_html(table, unhealthy=["unet"])
    rows = parse_rows(page)
    groups = [r["cells"][0]["text"] for r in rows if r["class"] == "group" and r["section"] == "clean"]
    assert groups == ["Unrolled networks", "U-Nets", "CS, untrained, zero-filled"]
    for r in model_rows(page, "unet"):
        assert r["class"] == "unhealthy" and "unhealthy" in r["cells"][0]["text"]
    for model in ("modl", "smug", "cs_tv"):
        assert all(r["class"] is None for r in model_rows(page, model))
    assert "Flagged unhealthy in the training-health table: U-Net." in page


def test_text_from_the_table_is_escaped(table):
    hostile = table.copy()
    hostile.loc[hostile["model"] == "cs_tv", "model"] = "<img src=x onerror=alert(1)>"
    page = robustness_html(hostile)
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def _health_csv(tmp_path) -> pd.DataFrame:
    rows = []
    for model, kind, healthy, failed in (
        ("modl", "modl", True, ""),
        (
            "unet",
            "unet",
            False,
            "beats_zero_filled_test (-1.57 dB on test); beats_zero_filled_volumes (worst -1.7 dB)",
        ),
        ("cs_tv", "classical", True, ""),
        ("denoiser", "denoiser", False, "beats_identity (-12.35 dB over its noisy input)"),
    ):
        row = {column: np.nan for column in HEALTH_COLUMNS}
        row.update(model=model, kind=kind, healthy=healthy, failed_checks=failed, test_psnr=31.23456)
        if kind != "classical":
            row.update(optimizer_steps=120, epochs=3, best_epoch=2, lam=0.0501234)
        rows.append(row)
    path = tmp_path / "training_health.csv"
    pd.DataFrame(rows, columns=HEALTH_COLUMNS).to_csv(path, index=False)
    # Read back as the rule does: healthy comes back as bool, empty failed_checks as NaN.
    return pd.read_csv(path)


def test_health_page_marks_every_unhealthy_model_and_lists_its_checks(tmp_path):
    health = _health_csv(tmp_path)
    page = health_html(health)
    for model in ("modl", "unet", "cs_tv", "denoiser"):
        assert len(model_rows(page, model)) == 1, model
    [unet] = model_rows(page, "unet")
    assert unet["class"] == "unhealthy"
    assert "✗ unhealthy" in unet["cells"][0]["text"]
    texts = [c["text"] for c in unet["cells"]]
    assert "✗ no" in texts
    assert "beats_zero_filled_test (-1.57 dB on test)" in " ".join(texts)
    assert "beats_zero_filled_volumes (worst -1.7 dB)" in " ".join(texts)
    [denoiser] = model_rows(page, "denoiser")
    assert denoiser["class"] == "unhealthy"
    for model in ("modl", "cs_tv"):
        [row] = model_rows(page, model)
        assert row["class"] is None and "✓ yes" in [c["text"] for c in row["cells"]]
    assert "2 of 4 models unhealthy: U-Net, Denoiser." in page
    # Numbers rounded per quantity; a value that does not apply reads as a dash.
    [modl] = model_rows(page, "modl")
    texts = [c["text"] for c in modl["cells"]]
    assert "31.23" in texts and "0.0501" in texts and "120" in texts
    [cs] = model_rows(page, "cs_tv")
    assert "–" in [c["text"] for c in cs["cells"]]
    assert unhealthy_models(health) == ["unet", "denoiser"]


def test_health_page_says_when_every_model_is_healthy(tmp_path):
    health = _health_csv(tmp_path)
    health["healthy"], health["failed_checks"] = True, np.nan
    page = health_html(health)
    assert "All 4 models passed every check" in page
    assert not [r for r in parse_rows(page) if r["class"] == "unhealthy"]


def test_health_page_refuses_an_unreadable_verdict(tmp_path):
    health = _health_csv(tmp_path)
    health["healthy"] = health["healthy"].astype(object)
    health.loc[0, "healthy"] = "maybe"
    with pytest.raises(ValueError, match="healthy must be True or False"):
        health_html(health)


def test_shift_page_has_every_model_and_the_gap_closed(table):
    shifted = table[table["perturbation"] == "clean"].copy()
    shifted["perturbation"] = "anatomy_shift"
    shifted["mean"] = shifted["mean"] - np.where(shifted["metric"] == "NMSE", -0.01, 2.0)
    ttt = shifted[shifted["model"] == "modl"].copy()
    ttt["perturbation"] = "ttt_anatomy_shift"
    ttt["mean"] = ttt["mean"] + np.where(ttt["metric"] == "NMSE", -0.005, 1.0)
    summary = shift_summary(pd.concat([table, shifted, ttt], ignore_index=True))
    page = shift_html(summary)
    for model in MODELS:
        assert len(model_rows(page, model)) == 1, model
    [modl] = model_rows(page, "modl")
    assert "50 %" in [c["text"] for c in modl["cells"]]  # TTT closed half of the 2 dB gap
    assert "not measured" in shift_html(summary.iloc[0:0])


def test_script_writes_the_three_pages(tmp_path, table):
    from scripts.make_html_tables import main

    table.to_csv(tmp_path / "robustness.csv", index=False)
    shift_summary(table).to_csv(tmp_path / "distribution_shift.csv", index=False)
    _health_csv(tmp_path)
    out = tmp_path / "out"
    main(
        [
            "--robustness",
            str(tmp_path / "robustness.csv"),
            "--distribution-shift",
            str(tmp_path / "distribution_shift.csv"),
            "--training-health",
            str(tmp_path / "training_health.csv"),
            "--robustness-html",
            str(out / "robustness.html"),
            "--distribution-shift-html",
            str(out / "distribution_shift.html"),
            "--training-health-html",
            str(out / "training_health.html"),
        ]
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "distribution_shift.html",
        "robustness.html",
        "training_health.html",
    ]
    robustness = (out / "robustness.html").read_text()
    assert robustness.startswith("<!DOCTYPE html>") and "<style>" in robustness
    assert all(r["class"] == "unhealthy" for r in model_rows(robustness, "unet"))
    assert "not measured" in (out / "distribution_shift.html").read_text()
