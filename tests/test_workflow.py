"""The Snakemake workflow: static checks, config validation, and a tiny end-to-end run."""

import subprocess

import pandas as pd
import pytest
import torch

from smug.attacks import load_attack
from smug.figures import FIGURES

from tests.workflow_utils import BIN, REPO, TINY_CONFIG, copy_workflow, snakemake, write_config

TINY_CONFIG_MODELS = [
    "zero_filled", "cs_l1_wavelet", "cs_tv", "untrained", "unet", "unet_adv", "unet_adv_kspace", "modl",
    "modl_pgd", "smug", "weighted_smug", "rs_e2e",
]


def test_snakemake_lint_is_clean():
    result = snakemake(["--lint"], cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_snakefmt_check_passes():
    result = subprocess.run([str(BIN / "snakefmt"), "--check", "workflow"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_dry_run_lists_the_whole_pipeline(tmp_path):
    copy_workflow(tmp_path)
    result = snakemake(["-n", "--quiet", "rules"], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    for rule in ("synthetic_dataset", "masks", "train", "tune_classical", "attack", "noise", "evaluate",
                 "robustness_table", "figures"):
        assert rule in result.stdout


def test_unknown_or_mistyped_config_key_is_named(tmp_path):
    copy_workflow(tmp_path)
    bad_key = snakemake(["-n", "--configfile", str(write_config(tmp_path, {"synthetic": {"volumez": 3}}))], tmp_path)
    assert bad_key.returncode != 0
    assert "'volumez' was unexpected" in bad_key.stdout + bad_key.stderr
    bad_type = snakemake(["-n", "--configfile", str(write_config(tmp_path, {"synthetic": {"coils": "four"}}))], tmp_path)
    assert bad_type.returncode != 0
    assert "'four' is not of type 'integer'" in bad_type.stdout + bad_type.stderr


@pytest.mark.slow
def test_tiny_pipeline_runs_end_to_end(tmp_path):
    """The whole DAG from nothing on a tiny config: data, masks, every model, attacks, evaluation,
    table, figures and the Snakemake report."""
    copy_workflow(tmp_path)
    config = write_config(tmp_path, TINY_CONFIG)
    result = snakemake(["--cores", "2", "--configfile", str(config)], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    for model in ("denoiser", "modl", "smug", "weighted_smug", "rs_e2e", "modl_pgd", "unet", "unet_adv"):
        record = torch.load(tmp_path / f"results/models/{model}/model.pt", weights_only=True)
        assert record["spec"]["name"] == model
        assert record["provenance"]["packages"]["torch"] and record["train_seconds"] > 0
        assert (tmp_path / f"results/logs/train/{model}.log").exists()
        assert (tmp_path / f"results/benchmarks/rules/train_{model}.tsv").exists()
    assert sorted(p.name for p in (tmp_path / "resources/masks").iterdir()) == ["2x.npz", "4x.npz"]

    # The training-health table: every evaluated model and the denoiser, with a verdict and, for an
    # unhealthy model (expected at this size), the checks it failed.
    health = pd.read_csv(tmp_path / "results/tables/training_health.csv")
    from smug.health import COLUMNS as HEALTH_COLUMNS
    assert list(health.columns) == HEALTH_COLUMNS
    assert set(health["model"]) == set(TINY_CONFIG_MODELS) | {"denoiser"}
    assert health.set_index("model").loc["zero_filled", "healthy"]
    unhealthy = health[~health["healthy"]]
    assert unhealthy["failed_checks"].str.len().gt(0).all()
    for model in unhealthy["model"]:
        assert f"WARNING: model {model} is not healthy" in result.stdout + result.stderr
    trained = health[health["kind"].isin(["modl", "smug"])]
    assert (trained["lam"] > 0).all() and (trained["optimizer_steps"] > 0).all()

    table = pd.read_csv(tmp_path / "results/tables/robustness.csv")
    assert not table.isna().any().any()
    assert set(table.loc[table["perturbation"] == "pgd_kspace_linf", "protocol"]) == {"white-box (EOT)"}
    assert set(table["model"]) == set(TINY_CONFIG_MODELS)
    expected = {"clean", "pgd_kspace_linf", "pgd_image_linf", "noise_kspace_linf", "noise_image_linf",
                "acceleration", "unrolls", "generator_unet_adv", "generator_unet_adv_kspace", "anatomy_shift",
                "small_feature", "ttt_anatomy_shift"}
    assert expected <= set(table["perturbation"])
    # The robustness study's measurements: every model under anatomy shift and small features, the
    # listed networks after test-time training, and the gap it closes.
    assert set(table[table["perturbation"] == "anatomy_shift"]["model"]) == set(TINY_CONFIG_MODELS)
    features = table[table["perturbation"] == "small_feature"]
    assert {"feature_error", "feature_detected"} <= set(features["metric"])
    assert set(table[table["perturbation"] == "ttt_anatomy_shift"]["model"]) == {"modl", "smug"}
    shift = pd.read_csv(tmp_path / "results/tables/distribution_shift.csv")
    assert set(shift["model"]) == set(TINY_CONFIG_MODELS)
    assert shift[shift["model"] == "modl"]["ttt"].notna().all()
    assert set(table[table["perturbation"] == "unrolls"]["level"]) == {1.0, 3.0}
    for figure in FIGURES:
        assert (tmp_path / f"results/figures/{figure}.png").stat().st_size > 0
        assert (tmp_path / f"results/figures/{figure}.pdf").stat().st_size > 0
    attack = tmp_path / "results/attacks/smug/pgd_kspace_linf.h5"
    levels = load_attack(attack)
    assert [attrs["eps"] for _, attrs in levels] == [0.01, 0.02]

    again = snakemake(["-n", "--configfile", str(config)], tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr

    report = snakemake(["--configfile", str(config), "--report", "results/report.html"], tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "results/report.html").read_text()
    assert "robustness_curves.png" in html
