"""The one registry of methods, attacks and figures (smug.study.methods) and everything that must agree
with it: the config schema, the model factory, the training stages, the method loader, the attack
functions, and a DAG that builds without torch."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from smug.attacks import is_random_noise
from smug.models import build_model, CompressedSensing, denoiser_of, DENOISERS, FAMILY_MODELS, load_method
from smug.models import MODEL_KINDS, build_fastmri_model, record_kind, to_record
from smug.study import ATTACKS, DENOISER_NAMES, FAMILIES, FIGURES, KINDS, METHODS, NOISE_COUNTERPART
from smug.study import schema_names, spec_settings, trained_methods
from smug.training import initialise, loss_for
from tests.workflow_utils import REPO, TINY_CONFIG, copy_workflow, deep_update, snakemake, write_config

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())
EVALUATED = [name for name in METHODS if name != "denoiser"]  # the denoiser is a stage, never scored
WHITE_BOX = [name for name, attack in ATTACKS.items() if attack.noise is not None]


def test_schema_takes_its_names_from_the_registry(tmp_path):
    """The schema lists no method or attack names of its own: the config is validated against the
    registry's (smug.study.methods.schema_names), so a misspelt one is one line naming the closest."""
    names = schema_names()
    assert names["evaluated_method"] == EVALUATED and names["white_box_attack"] == WHITE_BOX
    assert names["adaptable_method"] == [name for name in trained_methods() if name != "denoiser"]
    assert names["generator_method"] == ["unet_adv", "unet_adv_kspace"]
    text = (REPO / "workflow/schemas/config.schema.yaml").read_text()
    assert all(f"#/$defs/{name}" in text and "enum" not in SCHEMA["$defs"][name] for name in names)
    assert "smug, weighted_smug" not in text and "pgd_kspace_linf" not in text
    copy_workflow(tmp_path)
    config = write_config(
        tmp_path, deep_update(TINY_CONFIG, {"evaluation": {"models": ["zero_filled", "smugg"]}})
    )
    result = snakemake(["-n", "--configfile", str(config)], tmp_path)
    assert result.returncode != 0
    assert (
        "config error: evaluation.models.1: 'smugg' is not allowed; did you mean 'smug'?"
        in result.stdout + result.stderr
    )


def test_every_family_is_declared_once_and_built_by_the_models():
    assert {kind.family for kind in KINDS.values()} <= set(FAMILIES)
    assert set(FAMILY_MODELS) == set(FAMILIES)
    for name, family in FAMILIES.items():
        # A family trained by scripts/train.py has a builder, a spec check, a loss and settings.
        trained = FAMILY_MODELS[name].build is not None
        assert (family.settings is not None) == (family.loss is not None) == trained, name
        assert (FAMILY_MODELS[name].check_model is not None) == trained, name


def test_the_schema_names_exactly_the_denoisers_the_library_builds():
    assert schema_names()["denoiser"] == list(DENOISER_NAMES) and set(DENOISER_NAMES) == set(DENOISERS)


def test_every_attack_has_a_noise_counterpart_of_the_same_ball():
    assert set(NOISE_COUNTERPART) == set(WHITE_BOX)
    for name, noise in NOISE_COUNTERPART.items():
        assert is_random_noise(noise) and not is_random_noise(name)
        pgd, random = ATTACKS[name], ATTACKS[noise]
        assert (pgd.domain, pgd.norm, pgd.relative) == (random.domain, random.norm, random.relative), name


def test_every_trained_kind_is_built_and_has_a_training_loss():
    config = deep_update(CONFIG, TINY_CONFIG)
    assert set(MODEL_KINDS) == {m.kind for m in trained_methods().values()}
    for name, method in trained_methods().items():
        spec = {"name": name, "kind": method.kind, "seed": 0, **spec_settings(name, config)}
        model = build_model(method.kind, spec["model"], spec.get("smoothing"))
        assert bool(getattr(model, "randomised", False)) == KINDS[method.kind].randomised, name
        teacher = (
            build_model("modl", spec_settings("modl", config)["model"]) if method.kind == "rs_e2e" else None
        )
        assert callable(loss_for(spec, teacher, (32, 32), torch.device("cpu")))
        if method.init is not None:
            assert KINDS[METHODS[method.init].kind].made_by == "train"


def test_every_kind_is_rebuilt_from_its_saved_record(tmp_path):
    config = deep_update(CONFIG, TINY_CONFIG)
    records = {
        "classical": to_record(CompressedSensing("tv", 1e-3, 2, solver="fista")),
        "untrained": {"kind": "untrained"},
        "zero_filled": {"kind": "zero_filled"},
        "fastmri": {
            "kind": "fastmri",
            "architecture": "unet",
            "sizes": {"chans": 4, "num_pool_layers": 2},
            "state_dict": build_fastmri_model("unet", chans=4, num_pool_layers=2).state_dict(),
        },
    }
    for name, method in trained_methods().items():
        spec = {"name": name, "kind": method.kind, "seed": 0, **spec_settings(name, config)}
        records[method.kind] = {
            "spec": spec,
            "state_dict": build_model(method.kind, spec["model"], spec.get("smoothing")).state_dict(),
        }
    assert set(records) == set(KINDS)
    for kind, record in records.items():
        torch.save(record, tmp_path / f"{kind}.pt")
        model, loaded = load_method(tmp_path / f"{kind}.pt")
        assert record_kind(loaded) == kind and not model.training, kind
    torch.save({"kind": "hologram"}, tmp_path / "unknown.pt")
    with pytest.raises(ValueError, match="unknown.pt is not a model saved by this pipeline"):
        load_method(tmp_path / "unknown.pt")
    torch.save({"spec": records["modl"]["spec"]}, tmp_path / "weightless.pt")
    with pytest.raises(
        ValueError, match=r"weightless.pt: not a trained network's record \(no state_dict/spec\)"
    ):
        load_method(tmp_path / "weightless.pt")


def test_stages_start_from_what_their_family_and_smoothing_say(tmp_path):
    config = deep_update(CONFIG, TINY_CONFIG)
    cpu = torch.device("cpu")
    specs = {
        name: {"name": name, "kind": METHODS[name].kind, "seed": 0, **spec_settings(name, config)}
        for name in ("denoiser", "modl", "rs_e2e", "unet")
    }

    def fresh(name):
        return build_model(specs[name]["kind"], specs[name]["model"], specs[name].get("smoothing"))

    saved = {}
    for name in ("denoiser", "modl"):
        saved[name] = (fresh(name), tmp_path / f"{name}.pt")
        torch.save({"spec": specs[name], "state_dict": saved[name][0].state_dict()}, saved[name][1])
    assert initialise(fresh("unet"), specs["unet"], None, cpu) is None
    with pytest.raises(ValueError, match="stage 'modl' needs --init"):
        initialise(fresh("modl"), specs["modl"], None, cpu)
    modl = fresh("modl")
    assert initialise(modl, specs["modl"], saved["denoiser"][1], cpu) is None
    expected = saved["denoiser"][0].state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in denoiser_of(modl).state_dict().items())
    teacher = initialise(fresh("rs_e2e"), specs["rs_e2e"], saved["modl"][1], cpu)
    assert teacher is not None and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match="RS-E2E must start from a trained MoDL"):
        initialise(fresh("rs_e2e"), specs["rs_e2e"], saved["denoiser"][1], cpu)


@pytest.mark.parametrize(
    "section, key, expected",
    [
        ("smoothing", "sigma", {"smug", "weighted_smug"}),
        ("smoothing", "kspace_sigma", {"rs_e2e"}),
        ("smoothing", "num_samples", {"smug", "weighted_smug", "rs_e2e"}),
        ("training", "pretrain_sigma", {"denoiser"}),
        ("training", "ustab_target", {"smug", "weighted_smug"}),
        ("model", "num_unrolls", {"modl", "modl_pgd", "smug", "weighted_smug", "rs_e2e"}),
        ("model", "output_bound", {"modl", "modl_pgd", "smug", "weighted_smug", "rs_e2e"}),
        ("smoothing", "weight_scores", {"weighted_smug"}),
        ("smoothing", "weight_normalisation", {"weighted_smug"}),
    ],
)
def test_a_setting_is_in_the_spec_of_exactly_the_models_reading_it(section, key, expected):
    changed = copy.deepcopy(CONFIG)
    other = {"denoised_gt": "gt", "gt": "denoised_gt", None: 1.0, "denoised": "noisy", "sum": "softmax"}
    value = changed[section][key]
    changed[section][key] = other[value] if value in other else value * 3
    differs = {
        name for name in trained_methods() if spec_settings(name, CONFIG) != spec_settings(name, changed)
    }
    assert differs == expected


def test_figures_are_the_workflows(tmp_path):
    report = (REPO / "workflow/rules/report.smk").read_text()
    assert "figure=FIGURES" in report and len(set(FIGURES)) == len(FIGURES)


def test_dag_builds_without_torch_or_matplotlib(tmp_path):
    """A poisoned torch and matplotlib on the path: the dry run of the whole pipeline never imports them."""
    copy_workflow(tmp_path)
    poison = tmp_path / "poison"
    for package in ("torch", "matplotlib"):
        (poison / package).mkdir(parents=True)
        (poison / package / "__init__.py").write_text(
            f"raise ImportError('{package} imported while building the DAG')\n"
        )
    config = write_config(tmp_path, TINY_CONFIG)
    result = snakemake(["-n", "--configfile", str(config)], tmp_path, env_path=[poison, REPO])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported while building the DAG" not in result.stdout + result.stderr


def test_an_unrolled_stage_whose_spec_says_init_null_starts_from_random_weights(tmp_path):
    """The pre-training ablation's SMUG from scratch; RS-E2E cannot start so (it smooths a trained MoDL)."""
    config = deep_update(CONFIG, TINY_CONFIG)
    cpu = torch.device("cpu")
    specs = {
        name: {
            "name": name,
            "kind": METHODS[name].kind,
            "seed": 0,
            "init": None,
            **spec_settings(name, config),
        }
        for name in ("smug", "rs_e2e")
    }
    smug = build_model("smug", specs["smug"]["model"], specs["smug"]["smoothing"])
    before = {key: value.clone() for key, value in smug.state_dict().items()}
    assert initialise(smug, specs["smug"], None, cpu) is None
    assert all(torch.equal(value, before[key]) for key, value in smug.state_dict().items())
    with pytest.raises(ValueError, match="init: null"):
        initialise(smug, specs["smug"], str(tmp_path / "denoiser.pt"), cpu)
    rs_e2e = build_model("rs_e2e", specs["rs_e2e"]["model"], specs["rs_e2e"]["smoothing"])
    with pytest.raises(ValueError, match="RS-E2E smooths a trained MoDL"):
        initialise(rs_e2e, specs["rs_e2e"], None, cpu)
