"""Training health: did every model learn something? One row per model, each failed check named.

A table of robustness scores is only worth reading if the models behind it are working
reconstructions. The checks here are the minimum a reviewer would ask of each model before
comparing them, measured on the run's own validation and test slices:

==============================  ===============================================================
check                           passes when
==============================  ===============================================================
``trained``                     the optimiser took at least one step
``lam_positive``                the data-consistency weight is positive (MoDL-based models)
``beats_identity``              the denoiser's validation PSNR exceeds that of its noisy input
``beats_zero_filled_val``       the best validation PSNR exceeds zero-filled's on the same slices
``beats_zero_filled_test``      the mean clean test PSNR exceeds zero-filled's
``beats_zero_filled_volumes``   ... on every test volume, not only on average
``near_cs_tv``                  an unrolled model's clean test PSNR is at most ``max_gap_to_cs_tv_db``
                                below CS-TV's (or above it)
``improves_on_first_epoch``     fine-tuning helped: the best epoch is not the first and its
                                validation PSNR is above the first epoch's (SMUG, Weighted SMUG)
``no_worse_at_lower_acceleration``  an unrolled model's clean test PSNR at the lowest evaluated
                                acceleration (more measurements) is not below the one at the
                                training acceleration
``stable_across_seeds``         (the summary over seeds) no seed's best validation PSNR (clean
                                test PSNR for methods without validation) lies more than
                                ``max_seed_gap_db`` below the median of the model's seeds
==============================  ===============================================================

Each check runs on every training seed's model (:func:`health_by_seed`); a model is healthy only
if every seed passes every check and the seeds agree (:func:`health_summary`), and a failed row
names the seed.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import pandas as pd

# Which checks apply to which kind of method (a spec's ``kind``, or the method name for those that
# are not trained by scripts/train.py).
_RECONSTRUCTION_CHECKS = ("beats_zero_filled_test", "beats_zero_filled_volumes")
_TRAINED_CHECKS = ("trained", "beats_zero_filled_val", *_RECONSTRUCTION_CHECKS)
# Only data consistency promises that more measurements help: a U-Net trained on one mask's aliasing
# may score lower at 2x (Antun et al., PNAS 2020), which is a finding of the sampling-rate shift, not
# a training failure; its score at the lowest acceleration is still reported.
_UNROLLED_CHECKS = (*_TRAINED_CHECKS, "lam_positive", "near_cs_tv", "no_worse_at_lower_acceleration")
CHECKS_BY_KIND: dict[str, tuple[str, ...]] = {
    "denoiser": ("trained", "beats_identity"),
    "modl": _UNROLLED_CHECKS,
    "modl_pgd": _UNROLLED_CHECKS,
    "rs_e2e": _UNROLLED_CHECKS,
    "smug": (*_UNROLLED_CHECKS, "improves_on_first_epoch"),
    "weighted_smug": (*_UNROLLED_CHECKS, "improves_on_first_epoch"),
    "unet": _TRAINED_CHECKS,
    "unet_adv": _TRAINED_CHECKS,
    "classical": ("beats_zero_filled_test", "beats_zero_filled_volumes"),
    "untrained": ("beats_zero_filled_test", "beats_zero_filled_volumes"),
    "zero_filled": (),
    "fastmri": ("beats_zero_filled_test", "beats_zero_filled_volumes"),
    # The diffusion prior's validation PSNR is of its sampler, data consistency at every level.
    "diffusion": _TRAINED_CHECKS,
}

COLUMNS = [
    "model",
    "kind",
    "optimizer_steps",
    "epochs",
    "lam",
    "val_psnr_reference",
    "val_psnr_init",
    "val_psnr_first",
    "val_psnr_best",
    "val_psnr_last",
    "best_epoch",
    "denoiser_gain_db",
    "test_psnr",
    "test_gain_over_zero_filled_db",
    "worst_volume_gain_db",
    "gap_to_cs_tv_db",
    "test_psnr_low_acceleration",
    "healthy",
    "failed_checks",
]


def method_kind(record: dict[str, Any]) -> str:
    """The health-check kind of a saved method record (see :data:`CHECKS_BY_KIND`)."""
    if "spec" in record:
        return record["spec"]["kind"]
    return record["kind"]


def training_summary(record: dict[str, Any]) -> dict[str, Any]:
    """Optimisation facts of one saved record: steps, final lam, validation PSNR over the epochs.

    Records of methods that are not trained (compressed sensing, the untrained network, zero-filled)
    give NaN for everything but ``lam``.
    """
    history = record.get("history") or []
    nan = math.nan
    summary = {
        "optimizer_steps": record.get("optimizer_steps", history[-1].get("steps", nan) if history else nan),
        "epochs": len(history) if history else nan,
        # Only trained records carry a data-consistency weight (a CS record's "lam" is its prior's).
        "lam": float(record["lam"]) if "spec" in record and record.get("lam") is not None else nan,
        "val_psnr_reference": float(record.get("reference_val_psnr", nan)),
        "val_psnr_init": float(record.get("init_val_psnr", nan)),
        "val_psnr_first": float(history[0]["val_psnr"]) if history else nan,
        "val_psnr_best": float(record.get("best_val_psnr", nan)),
        "val_psnr_last": float(history[-1]["val_psnr"]) if history else nan,
        "best_epoch": record.get("best_epoch", nan),
    }
    # MoDL's specs name no backbone; the others' data consistency has no weight to check.
    spec_model = record["spec"].get("model", {}) if isinstance(record.get("spec"), dict) else {}
    summary["has_lam"] = spec_model.get("backbone", "modl") == "modl"
    if method_kind(record) == "denoiser":
        summary["denoiser_gain_db"] = summary["val_psnr_best"] - summary["val_psnr_reference"]
    else:
        summary["denoiser_gain_db"] = nan
    return summary


def clean_psnr_by_volume(scores: pd.DataFrame, acceleration: float | None = None) -> pd.Series:
    """Per-volume PSNR of one model's evaluation rows: clean (``acceleration=None``) or at an
    acceleration of the sampling-rate shift. Index: volume name."""
    if acceleration is None:
        rows = scores[(scores["perturbation"] == "clean") & (scores["metric"] == "PSNR")]
    else:
        rows = scores[
            (scores["perturbation"] == "acceleration")
            & (scores["metric"] == "PSNR")
            & (scores["level"].astype(float) == float(acceleration))
        ]
    return rows.set_index("volume")["value"].astype(float)


def evaluate_checks(kind: str, row: dict[str, Any], max_gap_to_cs_tv_db: float) -> list[str]:
    """Names of the checks ``row`` fails, each with the measured value that failed it."""
    failed = []
    for check in CHECKS_BY_KIND[kind]:
        verdict = _CHECKS[check](row, max_gap_to_cs_tv_db)
        if verdict is not None:
            failed.append(f"{check} ({verdict})")
    return failed


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _positive(value: Any, failure: str) -> str | None:
    """None when ``value`` is a finite number above zero, else the ``failure`` description."""
    return None if _finite(value) and value > 0 else failure


def _check_trained(row, _gap):
    return _positive(row["optimizer_steps"], f"{row['optimizer_steps']} optimiser steps")


def _check_lam(row, _gap):
    if not row.get("has_lam", True):  # E2E-VarNet, ISTA-Net+: no data-consistency weight to check
        return None
    return _positive(row["lam"], f"lam = {row['lam']}")


def _check_identity(row, _gap):
    gain = row["denoiser_gain_db"]
    return _positive(gain, f"{gain:+.2f} dB over its noisy input")


def _check_zero_filled_val(row, _gap):
    gain = row["val_psnr_best"] - row["val_psnr_reference"]
    return _positive(gain, f"{gain:+.2f} dB on validation")


def _check_zero_filled_test(row, _gap):
    gain = row["test_gain_over_zero_filled_db"]
    return _positive(gain, f"{gain:+.2f} dB on test")


def _check_zero_filled_volumes(row, _gap):
    worst = row["worst_volume_gain_db"]
    return _positive(worst, f"worst test volume {worst:+.2f} dB")


def _check_cs_tv(row, gap):
    below = row["gap_to_cs_tv_db"]
    if not _finite(below):  # no CS-TV in this run: nothing to compare with
        return None
    return None if below <= gap else f"{below:.2f} dB below CS-TV; limit {gap:g} dB"


def _check_first_epoch(row, _gap):
    best, first, epoch = row["val_psnr_best"], row["val_psnr_first"], row["best_epoch"]
    if _finite(epoch) and epoch > 1 and best > first:
        return None
    return f"best epoch {epoch}, {best - first:+.2f} dB over epoch 1"


def _check_low_acceleration(row, _gap):
    low, trained = row["test_psnr_low_acceleration"], row["test_psnr_train_acceleration"]
    if not _finite(low):  # no sampling-rate shift evaluated
        return None
    return None if low >= trained else f"{low - trained:+.2f} dB at the lowest acceleration"


_CHECKS = {
    "trained": _check_trained,
    "lam_positive": _check_lam,
    "beats_identity": _check_identity,
    "beats_zero_filled_val": _check_zero_filled_val,
    "beats_zero_filled_test": _check_zero_filled_test,
    "beats_zero_filled_volumes": _check_zero_filled_volumes,
    "near_cs_tv": _check_cs_tv,
    "improves_on_first_epoch": _check_first_epoch,
    "no_worse_at_lower_acceleration": _check_low_acceleration,
}


def health_table(
    records: dict[str, dict[str, Any]],
    scores: dict[str, pd.DataFrame],
    train_acceleration: float,
    max_gap_to_cs_tv_db: float,
    reference: str = "zero_filled",
    cs_reference: str = "cs_tv",
) -> pd.DataFrame:
    """One row per model: its training summary, its clean test scores and the health verdict.

    Args:
        records: model name -> the saved record of its ``model.pt`` (weights not needed).
        scores: model name -> its per-volume evaluation rows (``results/eval/{model}.csv``); models
            without evaluation (the pre-trained denoiser) are absent.
        train_acceleration: the acceleration every model was trained (or tuned) at.
        max_gap_to_cs_tv_db: how far below CS-TV an unrolled model may score and still be healthy.
        reference: the method every reconstruction must beat.
        cs_reference: the classical method unrolled models are held against (absent: not checked).

    Returns:
        a DataFrame with :data:`COLUMNS`, in the order of ``records``.
    """
    if reference not in scores:
        raise ValueError(
            f"the health table needs the evaluation of {reference!r}, the baseline every model must beat"
        )
    floor = clean_psnr_by_volume(scores[reference])
    cs_psnr = clean_psnr_by_volume(scores[cs_reference]).mean() if cs_reference in scores else math.nan
    rows = []
    for name, record in records.items():
        kind = method_kind(record)
        if kind not in CHECKS_BY_KIND:
            raise ValueError(f"model {name!r} has kind {kind!r}, which has no health checks")
        row = {"model": name, "kind": kind, **training_summary(record)}
        row.update(_test_scores(name, scores.get(name), floor, cs_psnr, train_acceleration))
        failed = [] if name == reference else evaluate_checks(kind, row, max_gap_to_cs_tv_db)
        row["healthy"] = not failed
        row["failed_checks"] = "; ".join(failed)
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _test_scores(
    name: str, model_scores: pd.DataFrame | None, floor: pd.Series, cs_psnr: float, train_acceleration: float
) -> dict[str, float]:
    nan = math.nan
    if model_scores is None:
        return {
            "test_psnr": nan,
            "test_gain_over_zero_filled_db": nan,
            "worst_volume_gain_db": nan,
            "gap_to_cs_tv_db": nan,
            "test_psnr_low_acceleration": nan,
            "test_psnr_train_acceleration": nan,
        }
    clean = clean_psnr_by_volume(model_scores)
    missing = sorted(set(floor.index) - set(clean.index))
    if missing:
        raise ValueError(
            f"the evaluation of {name!r} has no clean PSNR for test volume(s) {', '.join(missing)}"
        )
    gains = clean[floor.index] - floor
    accelerations = model_scores.loc[model_scores["perturbation"] == "acceleration", "level"].astype(float)
    low = accelerations.min() if len(accelerations) else nan
    low_psnr = (
        clean_psnr_by_volume(model_scores, low).mean() if _finite(low) and low < train_acceleration else nan
    )
    # Like with like: the sampling-rate shift's own score at the training acceleration, if evaluated.
    at_train = clean_psnr_by_volume(model_scores, train_acceleration)
    return {
        "test_psnr": clean.mean(),
        "test_gain_over_zero_filled_db": gains.mean(),
        "worst_volume_gain_db": gains.min(),
        "gap_to_cs_tv_db": cs_psnr - clean.mean(),
        "test_psnr_low_acceleration": low_psnr,
        "test_psnr_train_acceleration": clean.mean() if at_train.empty else at_train.mean(),
    }


# The summary's own columns: how much the model's training depends on its seed.
SEED_COLUMNS = ["n_seeds", "val_psnr_best_sd", "test_psnr_sd", "seed_gap_db", "worst_seed"]


def health_by_seed(
    records: dict[tuple[str, int], dict[str, Any]],
    scores: dict[tuple[str, int], pd.DataFrame],
    train_acceleration: float,
    max_gap_to_cs_tv_db: float,
) -> pd.DataFrame:
    """:func:`health_table` of every seed: its models' records and evaluations, and its own
    zero-filled and CS-TV references. Keys are ``(model, seed)``. Returns :data:`COLUMNS` plus ``seed``."""
    seeds = sorted({seed for _, seed in scores})
    if not seeds:
        raise ValueError("the health table needs evaluation scores of at least one seed")
    parts = []
    for seed in seeds:
        own_records = {model: record for (model, s), record in records.items() if s == seed}
        own_scores = {model: table for (model, s), table in scores.items() if s == seed}
        table = health_table(own_records, own_scores, train_acceleration, max_gap_to_cs_tv_db)
        parts.append(table.assign(seed=seed))
    return pd.concat(parts, ignore_index=True)[["model", "seed", *COLUMNS[1:]]]


def health_summary(by_seed: pd.DataFrame, max_seed_gap_db: float) -> pd.DataFrame:
    """One row per model over its seeds: the mean of every measurement, how far the seeds spread
    (:data:`SEED_COLUMNS`), and the verdict: healthy only if every seed passed every check and no
    seed lies more than ``max_seed_gap_db`` below the median of the model's seeds. Failed checks
    are named with their seed (``seed 1: near_cs_tv (...)``)."""
    rows = []
    for model, group in by_seed.groupby("model", sort=False):
        group = group.sort_values("seed")
        row: dict[str, Any] = {"model": model, "kind": group["kind"].iloc[0]}
        for column in COLUMNS[2:-2]:
            values = pd.to_numeric(group[column], errors="coerce")
            row[column] = values.mean() if values.notna().any() else math.nan
        failed = [
            f"seed {seed}: {check}"
            for seed, checks in zip(group["seed"], group["failed_checks"])
            if isinstance(checks, str) and checks
            for check in checks.split("; ")
        ]
        spread = _seed_spread(group)
        row.update(spread)
        if spread["seed_gap_db"] > max_seed_gap_db:
            measure = "best validation PSNR" if group["val_psnr_best"].notna().all() else "clean test PSNR"
            failed.append(
                f"stable_across_seeds (seed {spread['worst_seed']} is {spread['seed_gap_db']:.2f} dB below the "
                f"median of its {spread['n_seeds']} seeds' {measure})"
            )
        row["healthy"] = not failed
        row["failed_checks"] = "; ".join(failed)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*COLUMNS[:-2], *SEED_COLUMNS, "healthy", "failed_checks"])


def _seed_spread(group: pd.DataFrame) -> dict[str, Any]:
    """Across-seed SDs of the best validation and the clean test PSNR, and the worst seed's gap to
    the median (on validation where the method has one, else on the test slices)."""
    validation = pd.to_numeric(group["val_psnr_best"], errors="coerce")
    test = pd.to_numeric(group["test_psnr"], errors="coerce")
    measure = validation if validation.notna().all() else test
    n = len(group)
    spread = {
        "n_seeds": n,
        "val_psnr_best_sd": validation.std(ddof=1) if n > 1 and validation.notna().all() else math.nan,
        "test_psnr_sd": test.std(ddof=1) if n > 1 and test.notna().all() else math.nan,
        "seed_gap_db": 0.0,
        "worst_seed": "",
    }
    if n > 1 and measure.notna().all():
        worst = int(measure.to_numpy().argmin())
        spread["seed_gap_db"] = float(measure.median() - measure.iloc[worst])
        spread["worst_seed"] = str(int(group["seed"].iloc[worst]))
    return spread


def unhealthy(table: pd.DataFrame) -> Iterable[tuple[str, str]]:
    """``(model, failed checks)`` of every unhealthy row."""
    for row in table.itertuples():
        if not row.healthy:
            yield row.model, row.failed_checks
