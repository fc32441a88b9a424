"""The training-health verdicts: each check fails exactly when its measurement says so."""

import pandas as pd
import pytest

from smug.reporting import COLUMNS, SEED_COLUMNS, health_by_seed, health_summary, health_table, unhealthy

VOLUMES = ["a.h5", "b.h5"]


def _scores(model, clean, low=None, train=None):
    rows = [
        dict(model=model, perturbation="clean", level=0.0, metric="PSNR", volume=v, value=p)
        for v, p in zip(VOLUMES, clean)
    ]
    for level, values in ((2.0, low), (4.0, train)):
        if values is not None:
            rows += [
                dict(model=model, perturbation="acceleration", level=level, metric="PSNR", volume=v, value=p)
                for v, p in zip(VOLUMES, values)
            ]
    return pd.DataFrame(rows)


def _trained(kind, first, best, last, best_epoch, reference=15.0, lam=0.05, steps=100):
    history = [
        {"epoch": 1, "steps": steps // 3, "val_psnr": first},
        {"epoch": 2, "steps": steps, "val_psnr": last},
    ]
    return {
        "spec": {"kind": kind},
        "history": history,
        "best_epoch": best_epoch,
        "best_val_psnr": best,
        "reference_val_psnr": reference,
        "init_val_psnr": reference + 1,
        "optimizer_steps": steps,
        "lam": lam,
    }


def _table(records, scores):
    base = {"zero_filled": {"kind": "zero_filled"}, "cs_tv": {"kind": "classical", "lam": 0.003}}
    all_scores = {
        "zero_filled": _scores("zero_filled", [16, 16]),
        "cs_tv": _scores("cs_tv", [24, 24]),
        **scores,
    }
    return health_table(
        {**base, **records}, all_scores, train_acceleration=4, max_gap_to_cs_tv_db=3.0
    ).set_index("model")


def test_healthy_models_pass_and_the_table_has_its_columns():
    table = _table(
        {
            "modl": _trained("modl", 20, 24, 24, 2),
            "denoiser": {**_trained("denoiser", 40, 41, 41, 2, reference=39.9), "lam": None},
            "smug": _trained("smug", 20, 23, 23, 2),
            "unet": {**_trained("unet", 18, 22, 22, 2), "lam": None},
        },
        {
            "modl": _scores("modl", [24, 25], low=[27, 28], train=[24, 25]),
            "smug": _scores("smug", [23, 23]),
            "unet": _scores("unet", [22, 22], low=[19, 19], train=[22, 22]),
        },
    )
    assert list(table.reset_index().columns) == COLUMNS
    assert table["healthy"].all(), table["failed_checks"].to_dict()
    assert table.loc["denoiser", "denoiser_gain_db"] == pytest.approx(1.1)
    assert pd.isna(table.loc["cs_tv", "lam"])  # a CS weight is not a data-consistency weight
    assert list(unhealthy(table.reset_index())) == []


@pytest.mark.parametrize(
    "name, record, scores, failed",
    [
        (
            "denoiser",
            {**_trained("denoiser", 36, 36, 36, 2, reference=40), "lam": None},
            None,
            "beats_identity",
        ),
        ("modl", _trained("modl", 20, 24, 24, 2, lam=-0.002), [24, 24], "lam_positive"),
        ("modl", _trained("modl", 20, 24, 24, 2, steps=0), [24, 24], "trained"),
        ("modl", _trained("modl", 14, 14.5, 14, 2), [24, 24], "beats_zero_filled_val"),
        ("modl", _trained("modl", 20, 24, 24, 2), [15, 15], "beats_zero_filled_test"),
        ("modl", _trained("modl", 20, 24, 24, 2), [22, 15.5], "beats_zero_filled_volumes"),
        ("modl", _trained("modl", 20, 24, 24, 2), [20, 20], "near_cs_tv"),
        ("smug", _trained("smug", 23, 23, 20, 1), [23, 23], "improves_on_first_epoch"),
        ("untrained", {"kind": "untrained"}, [12, 12], "beats_zero_filled_test"),
    ],
)
def test_each_failed_check_is_named(name, record, scores, failed):
    table = _table({name: record}, {} if scores is None else {name: _scores(name, scores)})
    assert not table.loc[name, "healthy"]
    assert failed in table.loc[name, "failed_checks"]


def test_unrolled_model_must_not_lose_with_more_measurements_but_a_unet_may():
    table = _table(
        {"modl": _trained("modl", 20, 24, 24, 2), "unet": {**_trained("unet", 18, 22, 22, 2), "lam": None}},
        {
            "modl": _scores("modl", [24, 24], low=[23, 23], train=[24, 24]),
            "unet": _scores("unet", [22, 22], low=[19, 19], train=[22, 22]),
        },
    )
    assert "no_worse_at_lower_acceleration" in table.loc["modl", "failed_checks"]
    assert table.loc["unet", "healthy"]
    assert table.loc["unet", "test_psnr_low_acceleration"] == 19


def test_missing_zero_filled_evaluation_is_refused():
    with pytest.raises(ValueError, match="zero_filled"):
        health_table({"modl": _trained("modl", 20, 24, 24, 2)}, {}, 4, 3.0)


def _seeded(best_by_seed, test_by_seed):
    """Records and scores of MoDL (three seeds) and the references, keyed by (model, seed)."""
    records, scores = {}, {}
    for seed, (best, test) in enumerate(zip(best_by_seed, test_by_seed)):
        records[("zero_filled", seed)] = {"kind": "zero_filled"}
        records[("cs_tv", seed)] = {"kind": "classical", "lam": 0.003}
        records[("modl", seed)] = _trained("modl", 20, best, best, 2)
        scores[("zero_filled", seed)] = _scores("zero_filled", [16, 16])
        scores[("cs_tv", seed)] = _scores("cs_tv", [24, 24])
        scores[("modl", seed)] = _scores("modl", test)
    return records, scores


def test_a_model_is_healthy_only_if_every_seed_is_and_the_failing_seed_is_named():
    records, scores = _seeded([24, 24, 24], [[24, 24], [15, 15], [24, 24]])
    by_seed = health_by_seed(records, scores, train_acceleration=4, max_gap_to_cs_tv_db=3.0)
    assert len(by_seed) == 9 and set(by_seed["seed"]) == {0, 1, 2}
    summary = health_summary(by_seed, max_seed_gap_db=10.0).set_index("model")
    assert list(summary.reset_index().columns) == [*COLUMNS[:-2], *SEED_COLUMNS, *COLUMNS[-2:]]
    assert not summary.loc["modl", "healthy"]
    assert summary.loc["modl", "failed_checks"].startswith("seed 1: beats_zero_filled_test")
    assert summary.loc["modl", "n_seeds"] == 3
    assert summary.loc["modl", "test_psnr"] == pytest.approx((24 + 15 + 24) / 3)
    assert summary.loc["zero_filled", "healthy"]


def test_a_seed_far_below_the_others_flags_the_model_unstable():
    records, scores = _seeded([24.0, 21.5, 24.2], [[24, 24], [23, 23], [24, 24]])
    by_seed = health_by_seed(records, scores, train_acceleration=4, max_gap_to_cs_tv_db=3.0)
    assert by_seed.set_index(["model", "seed"])["healthy"].all()  # every seed passes on its own
    summary = health_summary(by_seed, max_seed_gap_db=1.0).set_index("model")
    row = summary.loc["modl"]
    assert not row["healthy"] and row["worst_seed"] == "1"
    assert row["seed_gap_db"] == pytest.approx(2.5)
    assert row["val_psnr_best_sd"] == pytest.approx(pd.Series([24.0, 21.5, 24.2]).std())
    assert (
        "stable_across_seeds (seed 1 is 2.50 dB below the median of its 3 seeds' best validation PSNR)"
        in (row["failed_checks"])
    )
    # Within the bound, the same spread is healthy.
    assert health_summary(by_seed, max_seed_gap_db=3.0).set_index("model").loc["modl", "healthy"]
