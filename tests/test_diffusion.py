"""The diffusion baseline (issue 26): the prior of smug.models.diffusion (its denoiser, the score
matching loss, the noise ladder, the sampler's data consistency), and the method in the registry, the
training stage, the transferred attacks it is scored under and the backbones comparison."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from smug.data import Batch
from smug.models.diffusion import (
    DiffusionReconstructor,
    NoiseConditionalDenoiser,
    noise_levels,
    score_matching_loss,
)
from smug.models.reconstruct import reconstruct
from smug.mri import apply_column_mask, fft2c
from tests.conftest import random_complex, random_sens_maps
from tests.workflow_utils import REPO, TINY_CONFIG, deep_update

CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())


def _batch(gen, coils: int | None) -> Batch:
    target = 0.3 * random_complex((2, 16, 16), gen, torch.complex64)
    mask = torch.zeros(16, dtype=torch.bool)
    mask[::3] = True
    mask[6:10] = True
    maps = None if coils is None else random_sens_maps(2, coils, 16, 16, gen, torch.complex64)
    coil_images = target.unsqueeze(1) if maps is None else maps * target.unsqueeze(1)
    return Batch(kspace=apply_column_mask(fft2c(coil_images), mask), mask=mask, target=target, sens_maps=maps)


def test_the_noise_ladder_is_geometric_from_the_largest_level_down():
    levels = noise_levels(0.5, 0.005, 5)
    assert levels[0] == pytest.approx(0.5) and levels[-1] == pytest.approx(0.005)
    ratios = [b / a for a, b in zip(levels, levels[1:])]
    assert all(r == pytest.approx(ratios[0]) for r in ratios)
    with pytest.raises(ValueError, match="0 < sigma_min <= sigma_max"):
        noise_levels(0.01, 0.1, 3)


def test_score_matching_is_the_noise_prediction_loss_and_trains_the_unet(gen):
    torch.manual_seed(0)
    denoiser = NoiseConditionalDenoiser(chans=4, num_pool_layers=2)
    images = 0.3 * random_complex((2, 16, 16), gen, torch.complex64)
    for p in denoiser.unet.parameters():
        torch.nn.init.zeros_(p)
    # F = 0: D(x + sigma n) - x = sigma n, so the loss is E |n|^2 per real part, 1 on average.
    loss = score_matching_loss(denoiser, images, torch.Generator().manual_seed(0), 0.01, 1.0)
    assert 0.7 < float(loss.detach()) < 1.3
    torch.manual_seed(0)
    trained = NoiseConditionalDenoiser(chans=4, num_pool_layers=2)
    score_matching_loss(trained, images, torch.Generator().manual_seed(0), 0.01, 1.0).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.unet.parameters())


@pytest.mark.parametrize("coils", [None, 3], ids=["single_coil", "multicoil"])
def test_the_samplers_output_agrees_with_the_measurements_on_the_sampled_columns(coils, gen):
    """With lam = 1e-4 in (A^H A + lam I) x = A^H y + lam D, the sampled k-space of the output differs
    from y by about lam / (1 + lam) of the denoised estimate's misfit: within 1e-3 of ||y||."""
    batch = _batch(gen, coils)
    torch.manual_seed(0)
    sampler = DiffusionReconstructor(
        chans=4, num_pool_layers=2, steps=4, lam=1e-4, cg_max_iter=200, cg_tol=1e-10
    ).eval()
    with torch.no_grad():
        out = reconstruct(sampler, batch, torch.Generator().manual_seed(1))
    misfit = batch.physics.A(out) - batch.kspace
    assert out.shape == batch.target.shape
    assert float(misfit.abs().norm() / batch.kspace.abs().norm()) < 1e-3
    # and the sampler is random: another draw gives another sample off the sampled columns
    with torch.no_grad():
        other = reconstruct(sampler, batch, torch.Generator().manual_seed(2))
    assert not torch.allclose(out, other)


def test_a_sampler_with_a_non_positive_weight_is_refused():
    with pytest.raises(ValueError, match="lam must be positive"):
        DiffusionReconstructor(4, 2, lam=0.0)


# ---- the method ----------------------------------------------------------------------------------


def test_the_diffusion_methods_spec_holds_its_section_and_builds_the_sampler_it_describes():
    from smug.models import build_model
    from smug.models.factory import check_spec
    from smug.study import KINDS, METHODS, spec_settings

    kind = KINDS[METHODS["diffusion"].kind]
    assert kind.family == "diffusion" and kind.made_by == "train" and kind.randomised
    settings = spec_settings("diffusion", CONFIG)
    section = CONFIG["baselines"]["diffusion"]
    assert settings["model"] == section["model"]
    assert settings["training"]["epochs"] == section["epochs"]
    assert settings["training"]["lr"] == section["training"]["lr"]
    # what it is attacked by is the evaluation's business, not the weights'
    assert "attacks" not in str(settings) and "smoothing" not in settings
    spec = {"kind": "diffusion", "model": settings["model"]}
    check_spec(spec)
    model = build_model("diffusion", settings["model"])
    assert isinstance(model, DiffusionReconstructor) and len(model.sigmas) == section["model"]["steps"]
    with pytest.raises(ValueError, match="spec.model has unknown key 'num_unrolls'"):
        check_spec({"kind": "diffusion", "model": {**settings["model"], "num_unrolls": 4}})
    with pytest.raises(ValueError, match=r"spec.model.steps is 2.5, not int"):
        check_spec({"kind": "diffusion", "model": {**settings["model"], "steps": 2.5}})


def test_the_training_stage_of_the_diffusion_method_is_score_matching_on_the_targets(gen):
    from smug.models import build_model
    from smug.training.stages import loss_for

    spec = {"kind": "diffusion", "model": {"chans": 4, "num_pool_layers": 2, "steps": 3}}
    torch.manual_seed(0)
    model = build_model("diffusion", spec["model"])
    objective = loss_for(spec, None, (16, 16), "cpu")
    batch = _batch(gen, 2)
    loss = objective(model, batch, torch.Generator().manual_seed(0))
    expected = score_matching_loss(
        model.denoiser, batch.target, torch.Generator().manual_seed(0), model.sigma_min, model.sigma_max
    )
    assert torch.allclose(loss, expected)
    loss.backward()
    assert all(p.grad is not None for p in model.denoiser.parameters())


def test_a_saved_diffusion_model_is_rebuilt_with_its_weights(tmp_path):
    from smug.models import build_model, load_method

    model_cfg = {"chans": 4, "num_pool_layers": 2, "steps": 3}
    torch.manual_seed(3)
    model = build_model("diffusion", model_cfg)
    path = tmp_path / "model.pt"
    torch.save({"spec": {"kind": "diffusion", "model": model_cfg}, "state_dict": model.state_dict()}, path)
    loaded, _ = load_method(path)
    for (key, value), other in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(value, other), key


# ---- what it is scored under ---------------------------------------------------------------------


def test_the_diffusion_method_is_scored_under_attacks_transferred_from_its_source_and_their_noise():
    from smug.study import NOISE_COUNTERPART, evaluated_conditions
    from smug.study.plan import model_perturbations

    config = copy.deepcopy(CONFIG)
    config["evaluation"]["models"] = [*config["evaluation"]["models"], "diffusion"]
    section = config["baselines"]["diffusion"]
    pairs = model_perturbations(config, "diffusion")
    noise = list(dict.fromkeys(NOISE_COUNTERPART[a] for a in section["attacks"]))
    assert pairs == [(section["attack_source"], a) for a in section["attacks"]] + [
        ("noise", n) for n in noise
    ]
    conditions = evaluated_conditions(config)["diffusion"]
    assert set(section["attacks"]) | set(noise) <= set(conditions)
    # the white-box attacks of the others, which no gradient through its sampler could compute, are not
    assert not set(config["evaluation"]["attacks"]) - set(section["attacks"]) & set(conditions)
    # and the untrained network, with no attacks configured, still gets none (nor their noise)
    assert model_perturbations(config, "untrained") == []


def test_the_protocol_column_calls_an_attack_on_a_model_no_gradient_reaches_a_transfer():
    from smug.attacks import attack_protocol

    assert attack_protocol("pgd_kspace_linf_journal", "diffusion") == "transfer"
    assert attack_protocol("pgd_kspace_linf", "untrained") == "transfer"
    assert attack_protocol("pgd_kspace_linf_journal", "modl") == "journal protocol"
    assert attack_protocol("pgd_kspace_linf", "smug@model.backbone=varnet") == "white-box (EOT)"
    noise = next(name for name in CONFIG["evaluation"]["attacks"] if name.startswith("pgd_kspace"))
    from smug.study import NOISE_COUNTERPART

    assert attack_protocol(NOISE_COUNTERPART[noise], "diffusion") == "random noise"
    assert attack_protocol("clean", "diffusion") == "clean"
    # an ablation variant of the sampler is no more reachable by a gradient than the sampler
    assert (
        attack_protocol("pgd_kspace_linf_journal", "diffusion@baselines.diffusion.model.steps=5")
        == "transfer"
    )


def test_the_backbones_comparison_shows_the_diffusion_baseline_with_transferred_attacks():
    from smug.study import backbone_models
    from smug.study.claims import backbone_conditions
    from smug.study.plan import backbone_perturbations, noise_eps

    config = copy.deepcopy(CONFIG)
    models = backbone_models(config)
    baseline = [m for m in models if m.name == "diffusion"]
    assert len(baseline) == 1 and baseline[0].role == "reference" and baseline[0].settings == ()
    attacks = config["backbones"]["attacks"]
    pairs = backbone_perturbations(config, "diffusion")
    assert [p for p in pairs if p[0] != "noise"] == [("modl", a) for a in attacks]
    assert backbone_perturbations(config, "smug") == [("smug", a) for a in attacks]
    assert backbone_perturbations(config, "cs_tv") == []
    conditions = backbone_conditions(config)
    for folder, name in pairs:
        if folder == "noise":
            assert conditions["diffusion"][name] == tuple(noise_eps(config, name))
    assert set(conditions["smug"]) == {"clean", *attacks}


def test_a_backbones_baseline_that_has_a_backbone_is_refused_by_the_schema():
    import jsonschema

    from smug.study.config_checks import config_error_message, resolved_schema

    validator = jsonschema.Draft202012Validator(
        resolved_schema(str(REPO / "workflow/schemas/config.schema.yaml"))
    )
    validator.validate(CONFIG)
    config = copy.deepcopy(CONFIG)
    config["backbones"]["baselines"] = ["diffusion", "smug"]
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    message = config_error_message(error)
    assert "backbones.baselines" in message and "'smug'" in message and len(message.splitlines()) <= 2


def test_a_diffusion_attack_outside_the_evaluations_attacks_is_one_line_naming_its_key():
    from smug.study.config_checks import check_config_references

    config = deep_update(CONFIG, TINY_CONFIG)
    config["evaluation"]["models"] = [*config["evaluation"]["models"], "diffusion"]
    config["evaluation"]["attacks"].pop("pgd_kspace_linf_journal")
    with pytest.raises(ValueError, match=r"baselines.diffusion.attacks: 'pgd_kspace_linf_journal' is not in"):
        check_config_references(config)
