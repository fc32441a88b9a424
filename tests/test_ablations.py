"""The ablation experiments: variants from config (smug.study.ablations), the theorem's diagnostics
(smug.evaluation.diagnostics), the ablation table and figures, and `snakemake ablations` end to end."""

from __future__ import annotations

import copy
import re

import pandas as pd
import pytest
import torch
import yaml

from smug.reporting import plot_experiment, ABLATION_COLUMNS, ablation_table
from smug.study import apply_settings, experiment_models, model_setup, spec_settings, variant_models
from smug.study import variant_name
from smug.data import Batch
from smug.evaluation import CommonNoise, diagnose, weight_spread, ROW_COLUMNS
from smug.mri import MRIPhysics, fft2c, apply_column_mask
from smug.models import MoDL, UnrollTrace, SmoothingTrace
from tests.conftest import random_complex
from tests.workflow_utils import REPO, TINY_CONFIG, copy_workflow, deep_update, snakemake, write_config

CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())


def _experiments(config, **experiments):
    changed = copy.deepcopy(config)
    changed["ablations"]["experiments"] = experiments
    changed.pop("backbones")  # the backbones' models are variants too (tests/test_backbones.py)
    return changed


def _experiment(methods, variants, references=(), figure="bars", diagnostics=False):
    return {
        "methods": list(methods),
        "variants": list(variants),
        "references": list(references),
        "figure": figure,
        "diagnostics": diagnostics,
    }


# ---- variants from config ----------------------------------------------------------------------


def test_a_variant_equal_to_the_runs_config_is_the_main_model_and_others_are_named_by_their_settings():
    config = _experiments(
        CONFIG,
        sigma=_experiment(["smug"], [{"smoothing.sigma": 0.01}, {"smoothing.sigma": 0.02}], ["modl"]),
        bounded=_experiment(
            ["smug"], [{"smoothing.sigma": 0.02, "model.output_bound": 1.0}, {"init": "denoiser"}]
        ),
    )
    models = experiment_models(config)
    assert [(m.name, m.role, m.label) for m in models["sigma"]] == [
        ("smug", "variant", "sigma=0.01"),
        ("smug@smoothing.sigma=0.02", "variant", "sigma=0.02"),
        ("modl", "reference", "modl"),
    ]
    # Keys sorted in the name; `init: denoiser` is SMUG's own starting point, so it is SMUG.
    assert [m.name for m in models["bounded"]] == ["smug@model.output_bound=1+smoothing.sigma=0.02", "smug"]
    assert set(variant_models(config)) == {
        "smug@smoothing.sigma=0.02",
        "smug@model.output_bound=1+smoothing.sigma=0.02",
    }


def test_a_variants_spec_changes_exactly_its_settings_and_init_names_its_starting_point():
    config = _experiments(
        CONFIG,
        pre=_experiment(["smug"], [{"init": None}, {"init": "modl"}]),
        ustab=_experiment(["smug"], [{"training.ustab_target": "denoised_gt_grad"}]),
    )
    variants = variant_models(config)
    assert set(variants) == {
        "smug@init=null",
        "smug@init=modl",
        "smug@training.ustab_target=denoised_gt_grad",
    }
    assert model_setup("smug@init=null", config)[2] is None
    assert model_setup("smug@init=modl", config)[2] == "modl"
    assert model_setup("smug", config) == ("smug", config, "denoiser")
    method, changed, init = model_setup("smug@training.ustab_target=denoised_gt_grad", config)
    base, spec = spec_settings("smug", config), spec_settings(method, changed)
    assert init == "denoiser" and spec["training"].pop("ustab_target") == "denoised_gt_grad"
    base["training"].pop("ustab_target")
    assert spec == base
    assert config["training"]["ustab_target"] == "gt"  # the run's config is left as it was


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"smoothing.sigmaa": 0.1}, r"ablations: 'smoothing.sigmaa' is not a config key"),
        (
            {"smoothing.sigma.x": 0.1},
            r"'smoothing.sigma.x' is not a config key \(smoothing.sigma is no section\)",
        ),
        ({"init": "cs_tv"}, r"init 'cs_tv' is not a trained method"),
        ({"init": "smug"}, r"init 'smug' is not a trained method"),
    ],
)
def test_a_wrong_variant_is_one_message_naming_it(settings, message):
    config = _experiments(CONFIG, broken=_experiment(["smug"], [settings]))
    with pytest.raises(ValueError, match=message):
        experiment_models(config)


def test_init_applies_only_to_unrolled_methods():
    with pytest.raises(ValueError, match=r"variants\[0\]: init applies to unrolled methods, not 'unet'"):
        experiment_models(_experiments(CONFIG, broken=_experiment(["unet"], [{"init": None}])))
    with pytest.raises(
        ValueError, match="'rs_e2e' smooths the trained MoDL it starts from; its init is fixed"
    ):
        experiment_models(_experiments(CONFIG, broken=_experiment(["rs_e2e"], [{"init": None}])))
    with pytest.raises(ValueError, match="not a config key"):
        apply_settings(CONFIG, {"nowhere.key": 1})
    assert variant_name("smug", {"b.x": "noisy", "a.y": 0.0025}) == "smug@a.y=0.0025+b.x=noisy"


# ---- diagnostics ---------------------------------------------------------------------------------


class _Zero(torch.nn.Module):
    """A denoiser that outputs zero: MoDL then solves (A^H A + lam I) x = A^H y, linear in y."""

    def forward(self, x):
        return torch.zeros_like(x)


def _single_coil_batches(n=3, size=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(size, dtype=torch.bool)
    mask[::2] = True
    targets = random_complex((n, size, size), gen, torch.complex64) * 0.3
    kspace = apply_column_mask(fft2c(targets).unsqueeze(1), mask)
    return [Batch(kspace=kspace, mask=mask, target=targets)]


@pytest.mark.parametrize("smoothing", ["none", "smug"])
def test_sensitivity_of_a_linear_unrolled_network_is_its_gain_on_the_sampled_kspace(smoothing):
    """With D = 0 and one unroll, f(y) = A^H y / (1 + lam) on a single coil (orthonormal FFT), so
    ||f(y + e) - f(y)|| / ||e|| = 1 / (1 + lam) for every e on the sampled k-space, random or worst."""
    lam = 0.25
    model = MoDL(_Zero(), num_unrolls=1, lam=lam, smoothing=smoothing, num_samples=2).eval()
    rows = pd.DataFrame(diagnose(model, _single_coil_batches(), radii=[0.01, 0.1], steps=3, seed=0))
    sensitivity = rows[rows["quantity"].str.startswith("sensitivity")]
    assert len(sensitivity) == 8
    assert sensitivity["value"].to_numpy() == pytest.approx(1 / (1 + lam), rel=1e-4)
    norms = rows[rows["quantity"] == "denoiser_output_norm"]
    assert list(norms["level"]) == [0.0, 0.01, 0.1] and (norms["value"] == 0).all()
    assert set(rows["n_slices"]) == {3}


def test_common_noise_fixes_the_draws_and_the_bound_caps_the_output_norm():
    torch.manual_seed(0)
    denoiser = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3, padding=1))
    batches = _single_coil_batches()
    smug = MoDL(denoiser, num_unrolls=2, smoothing="smug", sigma=0.05, num_samples=3).eval()
    fixed = CommonNoise(smug, seed=4)
    batch = batches[0]
    with torch.no_grad():
        once, twice = (fixed(batch.kspace, MRIPhysics(batch.mask)) for _ in range(2))
        free = [
            smug(batch.kspace, MRIPhysics(batch.mask), generator=torch.Generator().manual_seed(s))
            for s in (1, 2)
        ]
    torch.testing.assert_close(once, twice)
    assert not torch.allclose(free[0], free[1])
    bound = 0.05
    bounded = MoDL(
        denoiser, num_unrolls=2, smoothing="smug", sigma=0.05, num_samples=3, output_bound=bound
    ).eval()
    rows = pd.DataFrame(diagnose(bounded, batches, radii=[0.05], steps=1, seed=0))
    norms = rows[rows["quantity"] == "denoiser_output_norm"]["value"]
    assert (norms <= bound * (2 * 12 * 12) ** 0.5 + 1e-6).all()
    with pytest.raises(ValueError, match="radii must be positive"):
        diagnose(bounded, batches, radii=[0.0], steps=1, seed=0)
    with pytest.raises(ValueError, match="need an unrolled network"):
        diagnose(_Zero(), batches, radii=[0.05], steps=1, seed=0)


def test_weight_spread_is_one_for_uniform_weights_and_m_for_a_single_sample():
    m, b = 4, 3
    uniform = UnrollTrace(smoothing=[SmoothingTrace(torch.zeros(m, b, 2, 2), torch.full((m, b), 1 / m))])
    single = torch.zeros(m, b)
    single[0] = 1.0
    peaked = UnrollTrace(smoothing=[SmoothingTrace(torch.zeros(m, b, 2, 2), single)])
    assert weight_spread(uniform) == pytest.approx({"weight_max": 1.0, "weight_ess": 1.0})
    assert weight_spread(peaked) == pytest.approx({"weight_max": m, "weight_ess": 1 / m})
    assert weight_spread(UnrollTrace(smoothing=[SmoothingTrace(torch.zeros(m, b, 2, 2), None)])) == {}


# ---- table and figures ----------------------------------------------------------------------------


def _scores(model, clean, attacked):
    rows = []
    for volume, offset in (("a.h5", 0.0), ("b.h5", 0.5)):
        rows.append([model, "clean", 0.0, "PSNR", 0, volume, clean + offset, 2])
        for level, drop in ((0.01, 1.0), (0.02, 2.0), (0.04, 4.0)):
            rows.append([model, "pgd_kspace_linf", level, "PSNR", 0, volume, attacked + offset - drop, 2])
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def _diagnostics(model, seed=0):
    """One seed's diagnostics; the worst-case sensitivity's maximum is 2 + seed."""
    rows = [[model, "target_norm", 0.0, "max", 10.0, 4], [model, "denoiser_output_norm", 0.0, "max", 9.0, 4]]
    rows += [[model, "denoiser_output_norm", 0.05, "max", 9.5, 4]]
    for kind in ("sensitivity_random", "sensitivity_worst"):
        rows += [[model, kind, 0.05, "mean", 1.5, 4], [model, kind, 0.05, "max", 2.0 + seed, 4]]
    rows += [[model, "weight_max", 0.0, "mean", 1.3, 4]]
    frame = pd.DataFrame(rows, columns=["model", "quantity", "level", "statistic", "value", "n_slices"])
    return frame.assign(seed=seed)


EXPERIMENTS = {
    "sigma": [
        {"model": "smug", "method": "smug", "setting": "sigma=0.01", "role": "variant", "diagnosed": False},
        {
            "model": "smug@smoothing.sigma=0.02",
            "method": "smug",
            "setting": "sigma=0.02",
            "role": "variant",
            "diagnosed": False,
        },
        {"model": "modl", "method": "modl", "setting": "modl", "role": "reference", "diagnosed": False},
    ],
    "bounded": [
        {"model": "smug", "method": "smug", "setting": "sigma=0.01", "role": "variant", "diagnosed": True},
        {"model": "modl", "method": "modl", "setting": "modl", "role": "reference", "diagnosed": True},
    ],
}


def _table():
    scores = [
        _scores("smug", 25.0, 22.0),
        _scores("smug@smoothing.sigma=0.02", 24.0, 22.5),
        _scores("modl", 26, 21),
    ]
    health = pd.DataFrame(
        {"model": ["smug", "smug@smoothing.sigma=0.02", "modl"], "healthy": [True, False, True]}
    )
    diagnostics = [_diagnostics(model, seed) for model in ("smug", "modl") for seed in (0, 1)]
    return ablation_table(EXPERIMENTS, scores, diagnostics, health, "h", "c")


def test_ablation_table_names_each_rows_experiment_setting_and_health_and_diagnoses_only_where_asked():
    table = _table()
    assert list(table.columns) == ABLATION_COLUMNS
    sigma = table[table["experiment"] == "sigma"]
    assert set(sigma["protocol"]) == {"clean", "white-box (EOT)"}  # diagnostics only where diagnosed
    row = sigma[(sigma["model"] == "smug@smoothing.sigma=0.02") & (sigma["perturbation"] == "clean")].iloc[0]
    assert (row["setting"], row["healthy"], row["mean"], row["n_slices"]) == ("sigma=0.02", False, 24.25, 4)
    bounded = table[(table["experiment"] == "bounded") & (table["protocol"] == "diagnostic")]
    assert set(bounded["model"]) == {"smug", "modl"} and len(bounded) == 2 * 8
    worst = bounded[(bounded["perturbation"] == "sensitivity_worst") & (bounded["metric"] == "max")]
    # Averaged over the seeds it was measured on.
    assert set(worst["mean"]) == {2.5} and set(worst["n_seeds"]) == {2} and worst["ci_low"].isna().all()
    with pytest.raises(ValueError, match="model 'rs_e2e' has no evaluation scores"):
        extra = {
            "x": [
                {
                    "model": "rs_e2e",
                    "method": "rs_e2e",
                    "setting": "",
                    "role": "reference",
                    "diagnosed": False,
                }
            ]
        }
        ablation_table(
            extra, [_scores("smug", 1, 1)], [], pd.DataFrame({"model": [], "healthy": []}), "h", "c"
        )


@pytest.mark.parametrize(
    "experiment, kind", [("sigma", "tradeoff"), ("sigma", "bars"), ("bounded", "sensitivity")]
)
def test_every_ablation_figure_kind_draws(tmp_path, experiment, kind):
    table = _table()
    plot_experiment(table, experiment, kind, tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 10_000 and (tmp_path / "f.pdf").stat().st_size > 1_000


def test_an_ablation_figure_without_its_data_says_what_is_missing(tmp_path):
    table = _table()
    with pytest.raises(ValueError, match="no rows of experiment 'nothing'"):
        plot_experiment(table, "nothing", "bars", tmp_path / "f.png", tmp_path / "f.pdf")
    with pytest.raises(ValueError, match="no diagnostics to plot"):
        plot_experiment(table, "sigma", "sensitivity", tmp_path / "f.png", tmp_path / "f.pdf")
    assert not (tmp_path / "f.png").exists()


# ---- the workflow -----------------------------------------------------------------------------------

# One or two variants per experiment of the default, so `snakemake ablations` runs in a few minutes.
TINY_ABLATIONS = {
    "ablations": {
        "attacks": ["pgd_kspace_linf", "pgd_kspace_linf_journal"],
        "diagnostics": {"radii": [0.02, 0.05], "steps": 1},
        "experiments": {
            "sigma": {
                "variants": [{"smoothing.sigma": 0.01}, {"smoothing.sigma": 0.03}],
                "methods": ["smug"],
            },
            "bounded_output": {"variants": [{"model.output_bound": 1.0}]},
            "pretraining": {"variants": [{"init": None}, {"init": "modl"}], "references": ["smug"]},
            "weighting": {
                "variants": [
                    {"smoothing.weight_scores": "noisy"},
                    {"smoothing.weight_normalisation": "softmax"},
                ]
            },
            "ustab_target": {"variants": [{"training.ustab_target": "denoised_gt_grad"}]},
            "fine_tuning": {"variants": [{"training.lr": 0.0005}]},
        },
    }
}


def test_default_ablations_dry_run_trains_each_variant_once(tmp_path):
    copy_workflow(tmp_path)
    result = snakemake(["ablations", "-n", "--quiet", "rules"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout + result.stderr, re.M))
    # 19 variants: 8 sigmas (5 per method, less 0.01, the main models), the 3 bounded ones (the
    # unbounded are the sigma experiment's), 2 starting points, 2 weightings, 2 targets and 2
    # fine-tuning schedules (besides the main models' own); and the 5 main models they start from
    # or compare with.
    assert int(counts["train"]) == (19 + 5) * len(CONFIG["seeds"])
    assert int(counts["ablation_figure"]) == 6 and int(counts["ablations"]) == 1


@pytest.mark.parametrize(
    "variant, message",
    [
        (
            {"smoothing.sigma": -1.0},
            r"ablation variant smug@smoothing.sigma=-1: config error: smoothing.sigma: .*minimum",
        ),
        (
            {"training.ustab_target": "nowhere"},
            r"ablation variant .*: config error: training.ustab_target: 'nowhere' is not allowed",
        ),
        ({"smoothing.sigmaa": 0.1}, r"'smoothing.sigmaa' is not a config key"),
    ],
)
def test_a_broken_variant_stops_the_dag_naming_it(tmp_path, variant, message):
    copy_workflow(tmp_path)
    config = write_config(tmp_path, {"ablations": {"experiments": {"sigma": {"variants": [variant]}}}})
    result = snakemake(["ablations", "-n", "--configfile", str(config)], tmp_path)
    assert result.returncode != 0 and re.search(message, result.stdout + result.stderr), result.stderr[-2000:]


def test_ablation_attacks_must_be_configured_attacks(tmp_path):
    copy_workflow(tmp_path)
    config = write_config(tmp_path, {"ablations": {"attacks": ["pgd_kspace_l2"]}})
    result = snakemake(["ablations", "-n", "--configfile", str(config)], tmp_path)
    assert result.returncode != 0
    assert "ablations.attacks: 'pgd_kspace_l2' is not in evaluation.attacks" in result.stdout + result.stderr
    # Checked only when an ablation is built: the main pipeline does not depend on it.
    main = snakemake(["-n", "--configfile", str(config)], tmp_path)
    assert main.returncode == 0, main.stderr[-2000:]


@pytest.mark.slow
def test_tiny_ablations_run_end_to_end(tmp_path):
    """`snakemake ablations` from nothing: every experiment's variants trained with the same health
    checks as the main models, scored clean and under attack, diagnosed, tabled and drawn."""
    copy_workflow(tmp_path)
    config = write_config(tmp_path, deep_update(TINY_CONFIG, TINY_ABLATIONS))
    result = snakemake(["ablations", "--cores", "2", "--configfile", str(config)], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    table = pd.read_csv(tmp_path / "results/tables/ablations.csv")
    assert list(table.columns) == ABLATION_COLUMNS
    assert set(table["experiment"]) == set(TINY_ABLATIONS["ablations"]["experiments"])
    scored = table[table["protocol"] != "diagnostic"]
    assert set(scored["perturbation"]) == {"clean", "pgd_kspace_linf", "pgd_kspace_linf_journal"}
    assert not scored[["mean", "ci_low", "ci_high"]].isna().any().any()
    sigma = scored[(scored["experiment"] == "sigma") & (scored["perturbation"] == "clean")]
    assert list(sigma["setting"].unique()) == ["sigma=0.01", "sigma=0.03", "modl", "rs_e2e"]
    diagnosed = table[table["protocol"] == "diagnostic"]
    assert set(diagnosed["experiment"]) == {"bounded_output", "weighting"}
    assert {"sensitivity_worst", "sensitivity_random", "denoiser_output_norm"} <= set(
        diagnosed["perturbation"]
    )
    assert set(diagnosed.loc[diagnosed["perturbation"] == "weight_max", "model"]) == {
        "weighted_smug@smoothing.weight_scores=noisy",
        "weighted_smug@smoothing.weight_normalisation=softmax",
    }

    health = pd.read_csv(tmp_path / "results/tables/ablation_health.csv").set_index("model")
    assert {"smug@init=null", "smug@model.output_bound=1", "modl"} <= set(health.index)
    assert health.loc["smug@init=null", "kind"] == "smug"
    healthy = table.drop_duplicates("model").set_index("model")["healthy"]
    for model, verdict in health["healthy"].items():
        assert healthy[model] == verdict

    records = {
        name: torch.load(tmp_path / f"results/models/{name}/seed0/model.pt", weights_only=False)
        for name in ("smug@init=null", "smug@init=modl", "smug@model.output_bound=1", "smug")
    }
    assert records["smug@init=null"]["spec"]["init"] is None
    assert records["smug@init=modl"]["spec"]["init"] == "modl"
    assert records["smug@model.output_bound=1"]["spec"]["model"]["output_bound"] == 1.0
    assert records["smug"]["spec"]["model"]["output_bound"] is None
    # The same fine-tuning steps from every starting point.
    assert len({r["optimizer_steps"] for r in records.values()}) == 1
    for experiment in TINY_ABLATIONS["ablations"]["experiments"]:
        assert (tmp_path / f"results/figures/ablations/{experiment}.png").stat().st_size > 10_000
        assert (tmp_path / f"results/benchmarks/rules/ablation_figure_{experiment}.tsv").exists()
    # The pre-training claim, on the ablations' own scores (one seed: measured, but no verdict).
    claims = pd.read_csv(tmp_path / "results/tables/ablation_claims.csv").set_index("id")
    assert list(claims.index) == ["smug_pretraining"]
    assert claims.loc["smug_pretraining", "verdict"] == "inconclusive" and pd.notna(
        claims.loc["smug_pretraining", "effect"]
    )
