"""The claims table (smug.study.claims): score tables, paired comparisons, every claim kind on data with a
known answer, the config check of every claim, the forest plot, the HTML page and the script."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from html.parser import HTMLParser

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml

from smug.evaluation import CLAIM_COLUMNS, COMPARISON_COLUMNS, comparison_pairs, comparisons, evaluate_claims
from smug.evaluation import SCORE_COLUMNS, score_tables
from smug.study import check_claims, claim_kinds, evaluated_conditions, schema_names
from smug.reporting import claims_markdown
from tests.workflow_utils import REPO

SEEDS = (0, 1, 2)
TEST_VOLUMES = ("file_knee_1.h5", "file_knee_2.h5", "file_knee_3.h5", "file_knee_4.h5", "file_knee_5.h5")
SHIFT_VOLUMES = ("file_brain_1.h5", "file_brain_2.h5", "file_brain_3.h5", "file_brain_4.h5")
SHIFTED = ("anatomy_shift", "ttt_anatomy_shift")


class Scores:
    """A per-volume score table of a crossed design: each model's mean per condition, plus a
    volume effect shared by every model (as real volumes are easier or harder for all), a seed
    effect per model and condition, and a little cell noise."""

    def __init__(self, seeds=SEEDS, seed=0, seed_sd=0.2, noise_sd=0.05):
        self.rng = np.random.default_rng(seed)
        self.seeds = tuple(seeds)
        self.volume_effects = {
            "test": self.rng.normal(0.0, 1.0, len(TEST_VOLUMES)),
            "shift": self.rng.normal(0.0, 1.0, len(SHIFT_VOLUMES)),
        }
        self.seed_sd, self.noise_sd = seed_sd, noise_sd
        self.rows: list[dict] = []

    def add(self, model, perturbation, level, mean, metric="PSNR", values=None, same_for_every_seed=False):
        shifted = perturbation in SHIFTED
        volumes = SHIFT_VOLUMES if shifted else TEST_VOLUMES
        if values is None:
            seed_effect = self.rng.normal(0.0, self.seed_sd, (len(self.seeds), 1))
            noise = self.rng.normal(0.0, self.noise_sd, (len(self.seeds), len(volumes)))
            values = mean + self.volume_effects["shift" if shifted else "test"][None, :] + seed_effect + noise
            if same_for_every_seed:
                values = np.repeat(values[:1], len(self.seeds), axis=0)
        for i, seed in enumerate(self.seeds):
            for j, volume in enumerate(volumes):
                self.rows.append(
                    {
                        "model": model,
                        "perturbation": perturbation,
                        "level": float(level),
                        "metric": metric,
                        "seed": seed,
                        "volume": volume,
                        "value": float(values[i, j]),
                        "n_slices": 8,
                    }
                )
        return self

    def frame(self) -> pd.DataFrame:
        # Rows in a scrambled order: nothing may depend on the order they come in.
        frame = pd.DataFrame(self.rows, columns=SCORE_COLUMNS)
        return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


def claim(**fields) -> dict:
    base = {
        "id": "c",
        "source": "SMUG paper",
        "statement": "a claim",
        "kind": "difference",
        "metric": "PSNR",
        "direction": "greater",
        "threshold": 0.0,
    }
    return {**base, **fields}


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


# ---- score tables ----------------------------------------------------------------------------------


def test_score_columns_are_the_evaluation_rows_plus_the_seed():
    from smug.evaluation import ROW_COLUMNS

    assert SCORE_COLUMNS == ROW_COLUMNS


def test_score_tables_pivot_seeds_by_volumes_sorted():
    scores = Scores(seeds=(2, 0, 1)).add("smug", "clean", 0.0, 30.0).frame()
    table = score_tables(scores, "smug", "clean", 0.0, "PSNR")
    assert table.shape == (3, len(TEST_VOLUMES))
    first = scores[(scores["seed"] == 0) & (scores["volume"] == TEST_VOLUMES[0])]["value"].item()
    assert table[0, 0] == first
    # level None takes the condition's only level.
    assert np.array_equal(score_tables(scores, "smug", "clean", None, "PSNR"), table)


def test_score_tables_name_a_missing_condition_and_a_seed_lacking_a_volume():
    scores = Scores().add("smug", "pgd_kspace_linf", 0.02, 25.0).frame()
    with pytest.raises(
        ValueError, match=r"no scores of smug under pgd_kspace_linf 0.01 \(PSNR\).*levels: 0.02"
    ):
        score_tables(scores, "smug", "pgd_kspace_linf", 0.01, "PSNR")
    with pytest.raises(ValueError, match="no scores of modl"):
        score_tables(scores, "modl", "pgd_kspace_linf", 0.02, "PSNR")
    holed = scores.drop(scores[(scores["seed"] == 1) & (scores["volume"] == TEST_VOLUMES[2])].index)
    with pytest.raises(ValueError, match=f"seed 1 lacks volume\\(s\\) {TEST_VOLUMES[2]}"):
        score_tables(holed, "smug", "pgd_kspace_linf", 0.02, "PSNR")
    with pytest.raises(ValueError, match="lack column"):
        score_tables(scores.drop(columns="seed"), "smug", "pgd_kspace_linf", 0.02, "PSNR")
    with pytest.raises(ValueError, match="scored twice"):
        score_tables(pd.concat([scores, scores.iloc[:1]]), "smug", "pgd_kspace_linf", 0.02, "PSNR")


# ---- paired comparisons --------------------------------------------------------------------------


def test_comparison_pairs_every_method_against_modl_and_smug_against_the_unrolled():
    models = ["zero_filled", "cs_tv", "unet", "modl", "modl_pgd", "smug", "weighted_smug", "rs_e2e"]
    pairs = comparison_pairs(models)
    assert pairs == [
        ("zero_filled", "modl"),
        ("cs_tv", "modl"),
        ("unet", "modl"),
        ("modl_pgd", "modl"),
        ("smug", "modl"),
        ("weighted_smug", "modl"),
        ("rs_e2e", "modl"),
        ("smug", "modl_pgd"),
        ("smug", "weighted_smug"),
        ("smug", "rs_e2e"),
    ]
    assert len(set(pairs)) == len(pairs)
    # Only the models present: without MoDL, only SMUG's pairs.
    assert comparison_pairs(["cs_tv", "smug", "rs_e2e"]) == [("smug", "rs_e2e")]
    assert comparison_pairs(["cs_tv", "unet"]) == []


def test_comparisons_pair_the_same_seed_and_volume_and_decide_clear_differences():
    scores = (
        Scores()
        .add("modl", "clean", 0.0, 30.0)
        .add("smug", "clean", 0.0, 31.0)
        .add("modl", "pgd_kspace_linf", 0.02, 20.0)
        .add("smug", "pgd_kspace_linf", 0.02, 25.0)
        .add("smug", "unrolls", 16.0, 29.0)  # MoDL lacks it: not compared
        .add("cs_tv", "clean", 0.0, 28.0, same_for_every_seed=True)
    )
    # rs_e2e equals MoDL seed for seed, volume for volume: the paired difference is exactly 0.
    modl_clean = score_tables(scores.frame(), "modl", "clean", 0.0, "PSNR")
    scores.add("rs_e2e", "clean", 0.0, None, values=modl_clean)
    frame = scores.frame()
    table = comparisons(frame, comparison_pairs(["cs_tv", "modl", "smug", "rs_e2e"]))
    assert list(table.columns) == COMPARISON_COLUMNS
    keyed = table.set_index(["a", "b", "perturbation"])
    assert set(keyed.index) == {
        ("cs_tv", "modl", "clean"),
        ("smug", "modl", "clean"),
        ("smug", "modl", "pgd_kspace_linf"),
        ("rs_e2e", "modl", "clean"),
        ("smug", "rs_e2e", "clean"),
    }
    attacked = keyed.loc[("smug", "modl", "pgd_kspace_linf")]
    assert attacked["effect"] == pytest.approx(5.0, abs=0.6)
    assert attacked["decided"] and attacked["ci_low"] > 0
    assert attacked["n_seeds"] == 3 and attacked["n_volumes"] == len(TEST_VOLUMES)
    assert attacked["half_width"] == pytest.approx((attacked["ci_high"] - attacked["ci_low"]) / 2)
    same = keyed.loc[("rs_e2e", "modl", "clean")]
    assert same["effect"] == 0.0 and not same["decided"]
    # A model no seed changes (CS) is compared like any other.
    assert keyed.loc[("cs_tv", "modl", "clean")]["decided"]
    # One seed decides nothing.
    one = comparisons(frame[frame["seed"] == 0], [("smug", "modl")])
    assert not one["decided"].any() and (one["n_seeds"] == 1).all()


def test_comparisons_refuse_pairs_scored_on_different_volumes():
    frame = Scores().add("modl", "clean", 0.0, 30.0).add("smug", "clean", 0.0, 31.0).frame()
    frame = frame.drop(frame[(frame["model"] == "smug") & (frame["volume"] == TEST_VOLUMES[0])].index)
    with pytest.raises(ValueError, match="different seeds or volumes"):
        comparisons(frame, [("smug", "modl")])


# ---- each kind on constructed data with a known answer -------------------------------------------


def test_difference_positive_negative_and_zero_give_the_three_verdicts():
    scores = (
        Scores()
        .add("modl", "clean", 0.0, 30.0)
        .add("smug", "clean", 0.0, 32.0)
        .add("rs_e2e", "clean", 0.0, 28.0)
    )
    modl = score_tables(scores.frame(), "modl", "clean", 0.0, "PSNR")
    wobble = np.random.default_rng(5).normal(0.0, 0.1, modl.shape)
    scores.add(
        "weighted_smug", "clean", 0.0, None, values=modl + wobble - wobble.mean()
    )  # exactly 0 on average
    frame = scores.frame()
    claims = [
        claim(id="positive", a="smug", b="modl", perturbation="clean", level=0.0),
        claim(id="negative", a="rs_e2e", b="modl", perturbation="clean", level=0.0),
        claim(id="zero", a="weighted_smug", b="modl", perturbation="clean", level=0.0),
    ]
    table = evaluate_claims(frame, claims).set_index("id")
    assert list(evaluate_claims(frame, claims).columns) == CLAIM_COLUMNS
    assert table.loc["positive", "verdict"] == "supported"
    assert table.loc["positive", "effect"] == pytest.approx(2.0, abs=0.5)
    assert table.loc["negative", "verdict"] == "contradicted"
    assert table.loc["zero", "verdict"] == "inconclusive"
    assert table.loc["zero", "effect"] == pytest.approx(0.0, abs=1e-9)
    assert (table["n_seeds"] == 3).all() and (table["n_volumes"] == len(TEST_VOLUMES)).all()
    assert (table["half_width"] > 0).all()
    # A declared negative threshold: "not worse by more than 3 dB" holds for a 2 dB loss.
    margin = evaluate_claims(
        frame, [claim(id="m", a="rs_e2e", b="modl", perturbation="clean", level=0.0, threshold=-3.0)]
    )
    assert margin["verdict"].item() == "supported"


def test_difference_of_groups_averages_each_group():
    scores = Scores(seed_sd=0.0, noise_sd=0.0)
    for model, mean in {"unet": 30.0, "modl": 32.0, "cs_l1_wavelet": 27.0, "cs_tv": 29.0}.items():
        scores.add(model, "clean", 0.0, mean)
    row = evaluate_claims(
        scores.frame(),
        [claim(a=["unet", "modl"], b=["cs_l1_wavelet", "cs_tv"], perturbation="clean", level=0.0)],
    )
    assert row["effect"].item() == pytest.approx(3.0)
    assert "mean(unet, modl) - mean(cs_l1_wavelet, cs_tv)" in row["conditions"].item()


def test_drop_difference_compares_what_each_model_keeps_of_its_clean_score():
    scores = (
        Scores()
        .add("smug", "clean", 0.0, 32.0)
        .add("smug", "acceleration", 8.0, 31.0)  # drops 1 dB
        .add("modl", "clean", 0.0, 33.0)
        .add("modl", "acceleration", 8.0, 30.0)  # drops 3 dB
    )
    row = evaluate_claims(
        scores.frame(),
        [claim(kind="drop_difference", a="smug", b="modl", perturbation="acceleration", level=8.0)],
    ).iloc[0]
    assert row["effect"] == pytest.approx(2.0, abs=0.5)
    assert row["verdict"] == "supported"
    reverse = evaluate_claims(
        scores.frame(),
        [claim(kind="drop_difference", a="modl", b="smug", perturbation="acceleration", level=8.0)],
    ).iloc[0]
    assert reverse["verdict"] == "contradicted"


def _linear(noise_sd=0.05, slope=2.0, intercept=1.0):
    models = ["zero_filled", "cs_tv", "unet", "modl", "smug", "rs_e2e"]
    scores = Scores(noise_sd=noise_sd)
    for k, model in enumerate(models):
        x = 20.0 + 2.0 * k
        scores.add(model, "clean", 0.0, x)
        scores.add(model, "anatomy_shift", 0.0, slope * x + intercept)
    return scores.frame(), models


def test_slope_and_correlation_of_a_linear_relation_hold_the_true_values():
    frame, models = _linear()
    across = {
        "models": models,
        "x": {"perturbation": "clean", "level": 0.0},
        "y": {"perturbation": "anatomy_shift", "level": 0.0},
    }
    table = evaluate_claims(
        frame, [claim(id="slope", kind="slope", **across), claim(id="r", kind="correlation", **across)]
    ).set_index("id")
    slope, r = table.loc["slope"], table.loc["r"]
    assert slope["ci_low"] <= 2.0 <= slope["ci_high"] and slope["effect"] == pytest.approx(2.0, abs=0.05)
    assert r["effect"] == pytest.approx(1.0, abs=1e-3) and r["ci_high"] >= 1.0 - 1e-3
    assert slope["verdict"] == r["verdict"] == "supported"
    # x on the test volumes, y on the shift anatomy's: both sets counted.
    assert slope["n_volumes"] == len(TEST_VOLUMES) + len(SHIFT_VOLUMES)
    # Without noise the relation is exact and the interval collapses onto it.
    exact, _ = _linear(noise_sd=0.0)
    exact_row = evaluate_claims(exact, [claim(kind="correlation", **across)]).iloc[0]
    assert exact_row["ci_low"] <= 1.0 + 1e-9 and exact_row["ci_high"] >= 1.0 - 1e-9


def test_a_correlation_of_metrics_that_do_not_vary_is_inconclusive_with_a_note():
    scores = Scores()
    for model in ("cs_tv", "unet", "modl"):
        scores.add(model, "clean", 0.0, 30.0, same_for_every_seed=True)
    frame = scores.frame()
    frame["value"] = frame["volume"].map({v: float(i) for i, v in enumerate(TEST_VOLUMES)})
    across = {
        "models": ["cs_tv", "unet", "modl"],
        "x": {"perturbation": "clean", "level": 0.0},
        "y": {"perturbation": "clean", "level": 0.0},
    }
    row = evaluate_claims(frame, [claim(kind="correlation", **across)]).iloc[0]
    assert row["verdict"] == "inconclusive" and "no estimate" in row["note"]


def test_gap_closed_half_way_is_one_half_across_volume_sets():
    scores = Scores()
    for model in ("unet", "modl", "smug"):
        scores.add(model, "clean", 0.0, 32.0)
        scores.add(model, "anatomy_shift", 0.0, 24.0)
        scores.add(model, "ttt_anatomy_shift", 0.0, 28.0)
    frame = scores.frame()
    rows = evaluate_claims(
        frame,
        [
            claim(id="most", kind="gap_closed", models=["unet", "modl", "smug"], threshold=0.25),
            claim(id="half", kind="gap_closed", models=["unet", "modl", "smug"], threshold=0.5),
        ],
    ).set_index("id")
    assert rows.loc["half", "effect"] == pytest.approx(0.5, abs=0.05)
    assert rows.loc["half", "ci_low"] <= 0.5 <= rows.loc["half", "ci_high"]
    assert rows.loc["half", "verdict"] == "inconclusive"
    assert rows.loc["most", "verdict"] == "supported"


def test_tables_of_one_volume_set_on_different_volumes_are_refused():
    scores = Scores().add("modl", "clean", 0.0, 30.0).add("smug", "clean", 0.0, 31.0)
    frame = scores.frame()
    frame.loc[frame["model"] == "smug", "volume"] = frame.loc[frame["model"] == "smug", "volume"].str.replace(
        "knee", "other"
    )
    with pytest.raises(ValueError, match="claim c: .*same \\(test\\) volumes"):
        evaluate_claims(frame, [claim(a="smug", b="modl", perturbation="clean", level=0.0)])


def test_one_seed_gives_no_verdict_and_says_why():
    frame = Scores(seeds=(0,)).add("modl", "clean", 0.0, 30.0).add("smug", "clean", 0.0, 35.0).frame()
    row = evaluate_claims(frame, [claim(a="smug", b="modl", perturbation="clean", level=0.0)]).iloc[0]
    assert row["verdict"] == "inconclusive" and "one seed" in row["note"]


def test_ablation_claims_are_not_run_without_their_scores_and_evaluated_with_them():
    main = Scores().add("modl", "clean", 0.0, 30.0).frame()
    ablation = (
        Scores()
        .add("smug", "pgd_kspace_linf_journal", 0.02, 26.0)
        .add("smug@init=null", "pgd_kspace_linf_journal", 0.02, 22.0)
    ).frame()
    entry = claim(
        id="pretraining",
        source_table="ablations",
        experiment="pretraining",
        a="smug",
        b="smug@init=null",
        perturbation="pgd_kspace_linf_journal",
        level=0.02,
    )
    skipped = evaluate_claims(main, [entry]).iloc[0]
    assert skipped["verdict"] == "not run" and "ablation scores not given" in skipped["note"]
    assert np.isnan(skipped["effect"])
    assert evaluate_claims(main, [entry], ablation).iloc[0]["verdict"] == "supported"


def full_run(config, seeds=SEEDS) -> pd.DataFrame:
    """Scores of every model under every condition the config evaluates, every metric."""
    scores = Scores(seeds=seeds, seed=3)
    rng = np.random.default_rng(11)
    for model, conditions in evaluated_conditions(config).items():
        quality = rng.uniform(22.0, 34.0)
        for perturbation, levels in conditions.items():
            for level in levels:
                mean = quality - (0.0 if perturbation == "clean" else rng.uniform(0.0, 6.0))
                scores.add(model, perturbation, level, mean, "PSNR")
                scores.add(model, perturbation, level, 0.9 - 0.01 * (34.0 - mean), "SSIM")
                scores.add(model, perturbation, level, 0.2 - 0.005 * mean, "NMSE")
                if perturbation == "small_feature":
                    scores.add(model, perturbation, level, 0.5 - 0.01 * quality, "feature_error")
                    scores.add(model, perturbation, level, 0.5, "feature_detected")
    return scores.frame()


def test_every_default_claim_evaluates_on_a_constructed_full_run(config):
    """Every default claim reads conditions the config scores: on a run scoring them all, each gets an
    estimate (the ablation and backbone claims, without their scores, are not run) and every pair is
    compared."""
    frame = full_run(config)
    table = evaluate_claims(frame, config["claims"])
    assert list(table["id"]) == [c["id"] for c in config["claims"]]
    other_targets = [c["id"] for c in config["claims"] if c.get("source_table") in ("ablations", "backbones")]
    ablations = table["id"].isin(other_targets)
    assert (table.loc[ablations, "verdict"] == "not run").all()
    ran = table[~ablations]
    assert ran["verdict"].isin(["supported", "contradicted", "inconclusive"]).all()
    assert np.isfinite(ran["effect"]).all() and (ran["n_seeds"] == 3).all()
    paired = comparisons(frame, comparison_pairs(config["evaluation"]["models"]))
    assert len(paired) > 100 and paired["half_width"].notna().all()


def test_the_kind_table_is_one_mapping_of_every_kind():
    kinds = claim_kinds()
    assert set(kinds) == {"difference", "drop_difference", "slope", "correlation", "gap_closed"}
    for kind in kinds.values():
        assert callable(kind.conditions) and callable(kind.statistic) and callable(kind.describe)


# ---- the config check ------------------------------------------------------------------------------


def _default_claim(config, claim_id):
    return copy.deepcopy(next(c for c in config["claims"] if c["id"] == claim_id))


def test_every_default_claim_passes_the_check_and_the_schema(config):
    check_claims(config["claims"], config)
    ids = [c["id"] for c in config["claims"]]
    assert len(ids) == len(set(ids)) >= 16
    sources = {c["source"] for c in config["claims"]}
    assert sources == {"SMUG paper", "Robustness study (Darestani et al.)", "Adversarial training report"}
    assert {c["kind"] for c in config["claims"]} == set(claim_kinds())
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    for name, names in schema_names().items():
        schema["$defs"][name]["enum"] = names
    jsonschema.Draft202012Validator(schema).validate(config)


def _set(entry, **changes):
    for key, value in changes.items():
        if value is _DROP:
            entry.pop(key)
        else:
            entry[key] = value
    return entry


_DROP = object()

# (claim to start from, its changes, config changes, the key named, words of the message)
BAD_CLAIMS = [
    ("smug_robust_journal", {"kind": "differences"}, {}, "kind", "is not a claim kind"),
    ("smug_robust_journal", {"a": "smugg"}, {}, "a", "'smugg' is not an evaluated model"),
    (
        "shift_linear_slope",
        {"models": ["smug", "modl", "smugg"]},
        {},
        "models",
        "'smugg' is not an evaluated model",
    ),
    (
        "smug_robust_journal",
        {"perturbation": "pgd_kspace_linf_journl"},
        {},
        "perturbation",
        "is not evaluated under",
    ),
    ("smug_robust_journal", {"level": 0.03}, {}, "level", "0.03 is not a level of pgd_kspace_linf_journal"),
    # The journal protocol attacks only the models it names.
    (
        "unet_adv_robust",
        {"perturbation": "pgd_kspace_linf_journal", "level": 0.02},
        {},
        "perturbation",
        "'unet_adv' is not evaluated under 'pgd_kspace_linf_journal'",
    ),
    ("smug_stable_sampling", {"level": 3.0}, {}, "level", "3 is not a level of acceleration"),
    (
        "unet_adv_robust",
        {"perturbation": "unrolls", "level": 16.0},
        {},
        "perturbation",
        "'unet_adv' is not evaluated under 'unrolls'",
    ),
    ("smug_stable_unrolls", {"level": 32.0}, {}, "level", "32 is not a level of unrolls"),
    (
        "shift_linear_slope",
        {},
        {"data": {"shift_anatomy": None}},
        "y.perturbation",
        "is not evaluated under 'anatomy_shift'",
    ),
    (
        "ttt_closes_gap",
        {"models": ["unet", "cs_tv"]},
        {},
        "models",
        "'cs_tv' is not evaluated under 'ttt_anatomy_shift', which a gap_closed claim reads",
    ),
    (
        "small_features_follow_quality",
        {},
        {"evaluation": {"small_features": None}},
        "y.perturbation",
        "is not evaluated under 'small_feature'",
    ),
    (
        "small_features_follow_quality",
        {"x": {"perturbation": "clean", "level": 0.0, "metric": "feature_error"}},
        {},
        "x.metric",
        "scored only under small_feature",
    ),
    ("smug_accuracy", {"metric": "PSRN"}, {}, "metric", "'PSRN' is not a metric"),
    ("smug_accuracy", {"statement": _DROP}, {}, "statement", "missing"),
    ("smug_accuracy", {"b": _DROP}, {}, "b", "missing"),
    ("shift_linear_slope", {"x": _DROP}, {}, "x", "missing"),
    ("smug_accuracy", {"direction": "higher"}, {}, "direction", "'higher' is not greater or less"),
    ("smug_accuracy", {"threshold": "zero"}, {}, "threshold", "is not a finite number"),
    ("smug_accuracy", {"baseline": "modl"}, {}, "baseline", "unknown key"),
    ("smug_accuracy", {"level": None}, {}, None, None),  # null: clean's only level, accepted
    ("smug_robust_journal", {"level": None}, {}, "level", "null takes the only level"),
    ("shift_linear_correlation", {"models": ["smug", "modl"]}, {}, "models", "needs at least 3"),
    (
        "smug_pretraining",
        {"b": "smug@init=random"},
        {},
        "b",
        "is not a model of the ablation experiment 'pretraining'",
    ),
    ("smug_pretraining", {"experiment": "pretrain"}, {}, "experiment", "is not an ablation experiment"),
    (
        "smug_pretraining",
        {"perturbation": "acceleration", "level": 8.0},
        {},
        "perturbation",
        "is not evaluated under 'acceleration'",
    ),
    ("smug_accuracy", {"source_table": "ablation"}, {}, "source_table", "is not evaluation or ablations"),
]


def _merge(base, overlay):
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


@pytest.mark.parametrize("start, changes, config_changes, key, words", BAD_CLAIMS)
def test_check_claims_names_the_claim_and_the_key_on_one_line(
    config, start, changes, config_changes, key, words
):
    run = _merge(copy.deepcopy(config), config_changes)
    entry = _set(_default_claim(config, start), **changes)
    others = [
        c
        for c in config["claims"]
        if c["id"] != start and c["kind"] not in ("slope", "correlation", "gap_closed")
    ]
    claims = [*others, entry]
    if key is None:
        check_claims(claims, run)
        return
    with pytest.raises(ValueError) as error:
        check_claims(claims, run)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"config error: claims[{start}].{key}: "), message
    assert words in message


def test_check_claims_refuses_duplicate_ids_and_malformed_lists(config):
    twice = [config["claims"][0], copy.deepcopy(config["claims"][0])]
    with pytest.raises(ValueError, match=r"^config error: claims\[smug_accuracy\]\.id: duplicate id"):
        check_claims(twice, config)
    with pytest.raises(ValueError, match=r"^config error: claims: expected a list"):
        check_claims({"id": "x"}, config)
    with pytest.raises(ValueError, match=r"^config error: claims\[0\]: expected a mapping"):
        check_claims(["smug"], config)
    no_id = {k: v for k, v in config["claims"][0].items() if k != "id"}
    with pytest.raises(ValueError, match=r"^config error: claims\[0\]\.id: missing"):
        check_claims([no_id], config)


def test_evaluated_conditions_follow_the_workflow(config):
    conditions = evaluated_conditions(config)
    assert set(conditions) == set(config["evaluation"]["models"])
    assert (
        "pgd_kspace_linf_journal" in conditions["smug"]
        and "pgd_kspace_linf_journal" not in conditions["unet"]
    )
    # Random noise covers every grid of its norm ball, also the protocols'.
    assert conditions["unet"]["noise_kspace_linf"] == (0.005, 0.01, 0.02)
    # The untrained network: no generators, no unrolls; in the laptop config neither transferred
    # attacks (nor so their noise) nor the sampling-rate shift (each a refit of every slice), which
    # the paper configs' untrained section switches on.
    assert set(conditions["untrained"]) == {"clean", "anatomy_shift", "small_feature"}
    untrained = {**config["untrained"], "attacks": ["pgd_kspace_linf"], "sampling_shift": True}
    paper_scale = {**config, "untrained": untrained}
    assert set(evaluated_conditions(paper_scale)["untrained"]) == {
        "clean",
        "pgd_kspace_linf",
        "noise_kspace_linf",
        "acceleration",
        "anatomy_shift",
        "small_feature",
    }
    assert "unrolls" in conditions["modl"] and "unrolls" not in conditions["cs_tv"]
    assert conditions["smug"]["small_feature"] == (3.0,)
    assert "ttt_anatomy_shift" in conditions["smug"] and "ttt_anatomy_shift" not in conditions["rs_e2e"]


# ---- the forest plot, the HTML page, the markdown ---------------------------------------------------


HOSTILE = "<script>alert('x')</script> & friends"


@pytest.fixture(scope="module")
def claims_table() -> pd.DataFrame:
    scores = Scores()
    for model, (clean, attacked) in {
        "modl": (30.0, 20.0),
        "smug": (31.0, 25.0),
        "rs_e2e": (29.5, 24.0),
    }.items():
        scores.add(model, "clean", 0.0, clean)
        scores.add(model, "pgd_kspace_linf_journal", 0.02, attacked)
    claims = [
        claim(
            id="smug_robust",
            statement=HOSTILE,
            a="smug",
            b="modl",
            perturbation="pgd_kspace_linf_journal",
            level=0.02,
        ),
        claim(id="rs_worse_clean", a="rs_e2e", b="modl", perturbation="clean", level=0.0),
        claim(
            id="smug_vs_rs_clean",
            a="smug",
            b="rs_e2e",
            perturbation="clean",
            level=0.0,
            direction="less",
            threshold=-5.0,
        ),
        claim(
            id="pretraining",
            source_table="ablations",
            a="smug",
            b="smug@init=null",
            perturbation="clean",
            level=0.0,
        ),
    ]
    return evaluate_claims(scores.frame(), claims)


def test_forest_plot_draws_every_claim(tmp_path, claims_table):
    from smug.reporting import plot_claims

    figure = plot_claims(claims_table, tmp_path / "claims.png", tmp_path / "claims.pdf")
    assert (tmp_path / "claims.png").stat().st_size > 0 and (tmp_path / "claims.pdf").stat().st_size > 0
    labels = [t.get_text() for ax in figure.axes for t in ax.get_yticklabels()]
    assert labels == list(claims_table["id"])
    texts = " ".join(t.get_text() for ax in figure.axes for t in ax.texts)
    assert "not run" in texts and "supported" in texts
    # The not-run claim is text only: no interval drawn.
    assert not figure.axes[-1].lines
    assert not list(tmp_path.glob("*.part"))
    plot_claims(claims_table, tmp_path / "only.png")
    assert (tmp_path / "only.png").exists() and not (tmp_path / "only.pdf").exists()


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells: list[tuple[str, str]] = []
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self._open = dict(attrs).get("class", "")
            self.cells.append((self._open, ""))

    def handle_endtag(self, tag):
        if tag == "td":
            self._open = None

    def handle_data(self, data):
        if self._open is not None:
            cls, text = self.cells[-1]
            self.cells[-1] = (cls, text + data)


def test_html_page_escapes_text_and_classes_each_verdict(claims_table):
    from smug.reporting import claims_html

    page = claims_html(claims_table, "3 of 4 paired comparisons decided")
    assert "<script>" not in page and "&lt;script&gt;" in page
    parser = _Cells()
    parser.feed(page)
    texts = [text for _, text in parser.cells]
    for claim_id in claims_table["id"]:
        assert claim_id in texts
    assert HOSTILE in texts  # escaped in the source, the same text on the page
    verdicts = {text: cls for cls, text in parser.cells if "verdict" in cls}
    assert "supported" in verdicts["supported"] and "not-run" in verdicts["not run"]
    assert "3 of 4 paired comparisons decided" in page
    # Numbers are rounded per column, missing ones drawn as a dash.
    effect = claims_table.set_index("id").loc["smug_robust", "effect"]
    assert f"{effect:.3g}" in texts and "–" in texts


def test_markdown_section_lists_the_claims_and_the_decided_comparisons(claims_table):
    paired = pd.DataFrame({"decided": [True, False, True], "n_seeds": [3, 3, 3]})
    text = claims_markdown(claims_table, paired)
    assert "2 of 3 paired comparisons decided" in text
    for claim_id in claims_table["id"]:
        assert f"| {claim_id} |" in text
    # A table cell's own "|" is escaped, so the row keeps its columns.
    piped = claims_table.assign(statement="a | b")
    rows = [
        line for line in claims_markdown(piped, paired).splitlines() if line.startswith("| smug_robust |")
    ]
    assert "a \\| b" in rows[0]


# ---- the script -----------------------------------------------------------------------------------


def _run_script(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts/make_claims.py"), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
        cwd=REPO,
    )


def test_script_writes_every_output_from_a_constructed_scores_table(tmp_path, config):
    scores = Scores()
    for model, (clean, attacked) in {
        "modl": (30.0, 20.0),
        "smug": (31.0, 25.0),
        "cs_tv": (28.0, 22.0),
    }.items():
        scores.add(model, "clean", 0.0, clean, same_for_every_seed=model == "cs_tv")
        scores.add(model, "pgd_kspace_linf_journal", 0.02, attacked)
    scores.frame().to_csv(tmp_path / "scores.csv", index=False)
    claims = [
        _default_claim(config, "smug_accuracy"),
        _default_claim(config, "smug_robust_journal"),
        _default_claim(config, "smug_pretraining"),
    ]
    (tmp_path / "claims.json").write_text(json.dumps(claims))
    out = tmp_path / "out"
    outputs = {
        "--comparisons": out / "comparisons.csv",
        "--out": out / "claims.csv",
        "--html": out / "claims.html",
        "--figure": out / "claims.png",
        "--markdown": out / "claims.md",
    }
    words = [w for option, path in outputs.items() for w in (option, path)]
    result = _run_script("--scores", tmp_path / "scores.csv", "--claims", tmp_path / "claims.json", *words)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for path in outputs.values():
        assert path.stat().st_size > 0, path
    table = pd.read_csv(out / "claims.csv").set_index("id")
    assert table.loc["smug_robust_journal", "verdict"] == "supported"
    assert table.loc["smug_pretraining", "verdict"] == "not run"
    paired = pd.read_csv(out / "comparisons.csv")
    assert set(zip(paired["a"], paired["b"])) == {("cs_tv", "modl"), ("smug", "modl")}
    markdown = (out / "claims.md").read_text()
    assert f"{int(paired['decided'].sum())} of {len(paired)} paired comparisons decided" in markdown
    # One claim per word (as a rule passes a list) and a YAML file with a claims: list both work.
    one_per_word = [json.dumps(c) for c in claims[:2]]
    result = _run_script("--scores", tmp_path / "scores.csv", "--claims", *one_per_word, *words)
    assert result.returncode == 0, result.stderr
    (tmp_path / "claims.yaml").write_text(yaml.safe_dump({"claims": claims[:1]}))
    result = _run_script("--scores", tmp_path / "scores.csv", "--claims", tmp_path / "claims.yaml", *words)
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(out / "claims.csv")) == 1


def test_script_reports_a_bad_claim_or_missing_scores_in_one_line(tmp_path, config):
    Scores().add("modl", "clean", 0.0, 30.0).frame().to_csv(tmp_path / "scores.csv", index=False)
    outputs = [
        *("--comparisons", tmp_path / "c.csv", "--out", tmp_path / "o.csv", "--html", tmp_path / "o.html"),
        *("--figure", tmp_path / "o.png", "--markdown", tmp_path / "o.md"),
    ]
    bad = json.dumps([claim(kind="ratio", a="smug", b="modl", perturbation="clean")])
    result = _run_script("--scores", tmp_path / "scores.csv", "--claims", bad, *outputs)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: config error: claims[c].kind:")
    missing = json.dumps([_default_claim(config, "smug_accuracy")])
    result = _run_script("--scores", tmp_path / "scores.csv", "--claims", missing, *outputs)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "claim smug_accuracy: no scores of smug" in result.stderr
    assert not (tmp_path / "o.csv").exists()
