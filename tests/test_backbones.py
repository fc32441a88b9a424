"""Every unrolled method on every backbone (issue 26): SMUG, Weighted SMUG and RS-E2E on E2E-VarNet
and ISTA-Net+ (smug.models.unrolled), their training, the backbone models of `snakemake backbones`
(smug.study.ablations.backbone_models), the pair-by-pair claims and the target end to end."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from smug.data import Batch
from smug.evaluation import evaluate_claims
from smug.reporting.ablation_figures import backbone_of_setting
from smug.models import (
    RSE2E,
    E2EVarNet,
    ISTANetPlus,
    MoDL,
    UnrollTrace,
    WeightEncoder,
    build_model,
    symmetry_loss,
    without_smoothing,
)
from smug.models.dncnn import DnCNN
from smug.models.reconstruct import reconstruct
from smug.mri import apply_column_mask, channels_to_complex, complex_to_channels, fft2c, ifft2c, sens_combine
from smug.study import (
    backbone_models,
    check_claims,
    model_setup,
    spec_settings,
    start_method,
    validate_claims,
)
from smug.study.ablations import experiment_models
from smug.training import end_to_end_loss, unrolled_stability_loss
from smug.training.stages import initialise
from tests.conftest import random_complex, random_sens_maps
from tests.workflow_utils import REPO, TINY_CONFIG, copy_workflow, deep_update, snakemake, write_config

CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())
SIZES = {
    "varnet": {"num_cascades": 2, "chans": 4, "pools": 1, "estimate_sens": False},
    "ista": {"num_phases": 3, "num_filters": 4},
}
BACKBONES = ("modl", "varnet", "ista")


def network(backbone: str, seed: int = 0, **smoothing) -> torch.nn.Module:
    """A small network of ``backbone`` with weights fixed by ``seed`` (smoothing settings as given)."""
    torch.manual_seed(seed)
    if backbone == "modl":
        return MoDL(DnCNN(num_chans=4, num_layers=3), num_unrolls=2, lam=0.5, **smoothing).double()
    cls = E2EVarNet if backbone == "varnet" else ISTANetPlus
    return cls(**SIZES[backbone], **smoothing).double()


def multicoil_batch(gen: torch.Generator, batch: int = 2, size: int = 16) -> Batch:
    """Images of magnitude well inside [-1, 1] (the smoothing clamps there), two coils, every other
    column sampled."""
    target = 0.2 * random_complex((batch, size, size), gen)
    maps = random_sens_maps(batch, 2, size, size, gen)
    mask = torch.zeros(size, dtype=torch.bool)
    mask[::2] = True
    mask[size // 2 - 2 : size // 2 + 2] = True
    kspace = apply_column_mask(fft2c(maps * target.unsqueeze(1)), mask)
    return Batch(kspace=kspace, mask=mask, target=target, sens_maps=maps)


# ---- the backbones' own identities ---------------------------------------------------------------


def test_a_varnet_cascade_without_regulariser_puts_the_measurements_back_on_the_sampled_columns(gen):
    batch = multicoil_batch(gen)
    model = network("varnet")
    cascade = model.cascades[0]
    mask = batch.physics.mask.bool().reshape(1, 1, 1, -1)
    current = random_complex(batch.kspace.shape, gen)
    with torch.no_grad():
        cascade.dc_weight.fill_(1.0)
        out = cascade(current, batch.kspace, mask, batch.sens_maps, denoise=lambda image: image)
    # x - D(x) = 0: only the soft data consistency acts, and with weight 1 it restores y where sampled.
    torch.testing.assert_close(out[..., mask[0, 0, 0]], batch.kspace[..., mask[0, 0, 0]])
    torch.testing.assert_close(out[..., ~mask[0, 0, 0]], current[..., ~mask[0, 0, 0]])


def test_an_ista_gradient_step_leaves_an_image_that_explains_the_measurements_unchanged(gen):
    batch = multicoil_batch(gen)
    phase = network("ista").phases[0]
    physics = batch.physics
    consistent = batch.target  # A x = y exactly
    step = phase.gradient_step(consistent, physics.zero_filled_image(batch.kspace), physics)
    torch.testing.assert_close(step, consistent.to(step.dtype), atol=1e-12, rtol=0)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_the_adjoint_the_backbones_use_is_the_adjoint_of_their_forward_operator(backbone, gen):
    batch = multicoil_batch(gen)
    physics = batch.physics
    x = random_complex(batch.target.shape, gen)
    y = apply_column_mask(random_complex(batch.kspace.shape, gen), physics.mask)
    left = torch.vdot(physics.A(x).flatten(), y.flatten())
    right = torch.vdot(x.flatten(), physics.A_adjoint(y).flatten())
    torch.testing.assert_close(left, right)
    # Every backbone reconstructs through that physics, from y alone.
    out = reconstruct(network(backbone), batch)
    assert out.shape == batch.target.shape and torch.isfinite(torch.view_as_real(out)).all()


# ---- smoothing on every backbone -----------------------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
def test_a_backbone_smoothed_with_sigma_zero_is_the_vanilla_one(backbone, gen):
    batch = multicoil_batch(gen)
    vanilla = network(backbone)
    smoothed = network(backbone, smoothing="smug", sigma=0.0, num_samples=3)
    smoothed.load_state_dict(vanilla.state_dict())
    assert smoothed.randomised and not vanilla.randomised
    with torch.no_grad():
        torch.testing.assert_close(
            reconstruct(smoothed, batch, torch.Generator().manual_seed(1)), reconstruct(vanilla, batch)
        )


@pytest.mark.parametrize("backbone", BACKBONES)
def test_batched_smoothing_of_a_backbones_regulariser_equals_a_loop_over_the_draws(backbone, gen):
    model = network(backbone, smoothing="smug", sigma=0.05, num_samples=4).eval()  # DnCNN's batch norm
    image = 0.3 * random_complex((2, 16, 16), gen)
    with torch.no_grad():
        batched = model.regularize(1, image, torch.Generator().manual_seed(3))
        # The same draws, as smoothed_denoise takes them: real parts of all samples, then imaginary.
        draws = torch.randn(
            (2, 4, 2, 16, 16), generator=torch.Generator().manual_seed(3), dtype=torch.float64
        )
        looped = torch.zeros_like(image)
        for j in range(4):
            noisy = (complex_to_channels(image) + 0.05 * draws[:, j].permute(1, 0, 2, 3)).clamp(-1, 1)
            looped += channels_to_complex(model.regularizer(1)(noisy)) / 4
    torch.testing.assert_close(batched, looped)


@pytest.mark.parametrize("backbone", ("varnet", "ista"))
def test_smug_on_a_backbone_traces_every_unroll_and_its_stability_loss_trains_the_regulariser(backbone, gen):
    batch = multicoil_batch(gen)
    model = network(backbone, smoothing="smug", sigma=0.01, num_samples=2)
    trace = UnrollTrace()
    reconstruct(model, batch, torch.Generator().manual_seed(0), trace)
    unrolls = len(model.cascades if backbone == "varnet" else model.phases)
    assert len(trace.smoothing) == len(trace.inputs) == unrolls
    assert trace.smoothing[0].noisy_outputs.shape == (2, *batch.target.shape)
    loss = unrolled_stability_loss(model, batch, torch.Generator().manual_seed(0), target="denoised_gt")
    loss.backward()
    regulariser = model.cascades[0].model if backbone == "varnet" else model.phases[0].forward_transform
    assert torch.isfinite(loss) and any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in regulariser.parameters()
    )
    assert len(model.stability_targets(batch.target, unrolls)) == unrolls


def test_ista_nets_training_loss_carries_its_symmetry_constraint(gen):
    batch = multicoil_batch(gen)
    weighted, plain = network("ista"), network("ista")
    weighted.symmetry_weight, plain.symmetry_weight = 0.5, 0.0
    trace = UnrollTrace()
    reconstruct(weighted, batch, None, trace)
    difference = end_to_end_loss(weighted, batch, None) - end_to_end_loss(plain, batch, None)
    torch.testing.assert_close(difference, 0.5 * symmetry_loss(trace))


@pytest.mark.parametrize("backbone", ("varnet", "ista"))
def test_rs_e2e_and_weighted_smug_run_on_a_backbone_and_the_conference_surrogate_drops_the_smoothing(
    backbone, gen
):
    batch = multicoil_batch(gen)
    inner = network(backbone)
    rs = RSE2E(inner, sigma=0.0, num_samples=3)
    with torch.no_grad():
        # Zero k-space noise: the average of M identical copies is the network itself.
        torch.testing.assert_close(reconstruct(rs, batch, torch.Generator()), reconstruct(inner, batch))
    assert without_smoothing(rs) is inner
    weighted = network(
        backbone,
        smoothing="weighted",
        num_samples=2,
        weight_encoder=WeightEncoder(num_chans=4, num_blocks=2).double(),
    )
    plain = without_smoothing(weighted)
    assert not plain.randomised and all(p is q for p, q in zip(plain.parameters(), weighted.parameters()))
    out = reconstruct(weighted, batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(torch.view_as_real(out)).all()


# ---- specs, starting points and initialisation ---------------------------------------------------


def test_a_backbones_spec_holds_only_its_name_and_sizes_and_builds_its_network():
    config = copy.deepcopy(CONFIG)
    config["model"]["backbone"] = "varnet"
    spec = spec_settings("smug", config)
    assert spec["model"] == {"backbone": "varnet", "backbone_args": CONFIG["model"]["varnet"]}
    assert set(spec["smoothing"]) == {"sigma", "num_samples"}
    model = build_model("smug", spec["model"], spec["smoothing"])
    assert isinstance(model, E2EVarNet) and model.smoothing == "smug"
    # MoDL's spec is what it always was: no backbone key, so no model of the default run retrains.
    assert "backbone" not in spec_settings("smug", CONFIG)["model"]
    # Without a denoiser to pre-train, the vanilla network gets the pre-training's epochs too.
    epochs = CONFIG["training"]["epochs"]
    assert spec_settings("modl", config)["training"]["epochs"] == epochs["denoiser"] + epochs["modl"]
    assert spec["training"]["epochs"] == epochs["smug"]
    assert spec_settings("modl", CONFIG)["training"]["epochs"] == epochs["modl"]


def test_on_a_backbone_without_a_denoiser_the_vanilla_network_starts_from_scratch_and_the_rest_from_it():
    assert start_method("modl", "modl") == "denoiser" and start_method("smug", "modl") == "denoiser"
    assert start_method("modl", "varnet") is None
    assert [start_method(m, "ista") for m in ("smug", "weighted_smug", "rs_e2e", "modl_pgd")] == ["modl"] * 4
    models = {m.name: m for m in backbone_models(CONFIG) if m.role == "variant"}
    assert set(models) == {
        f"{method}{'' if backbone == 'modl' else '@model.backbone=' + backbone}"
        for method in CONFIG["backbones"]["methods"]
        for backbone in BACKBONES
    }
    assert model_setup("smug@model.backbone=varnet", CONFIG)[2] == "modl@model.backbone=varnet"
    assert model_setup("modl@model.backbone=ista", CONFIG)[2] is None
    assert model_setup("rs_e2e", CONFIG)[2] == "modl"


def _record(model: torch.nn.Module, kind: str, spec_model: dict) -> dict:
    return {"spec": {"kind": kind, "model": spec_model}, "state_dict": model.state_dict()}


def test_a_backbone_method_starts_from_its_vanilla_network_and_refuses_another_backbones(tmp_path):
    sizes = {"backbone": "varnet", "backbone_args": SIZES["varnet"]}
    vanilla = build_model("modl", sizes)
    path = tmp_path / "vanilla.pt"
    torch.save(_record(vanilla, "modl", sizes), path)
    weighted = build_model(
        "weighted_smug",
        sizes,
        {"sigma": 0.01, "num_samples": 2, "weight_encoder": {"num_chans": 4, "num_blocks": 2}},
    )
    initialise(weighted, {"kind": "weighted_smug", "name": "w"}, str(path), "cpu")
    for key, value in vanilla.state_dict().items():
        torch.testing.assert_close(weighted.state_dict()[key], value)
    ista = build_model(
        "smug", {"backbone": "ista", "backbone_args": SIZES["ista"]}, {"sigma": 0.01, "num_samples": 2}
    )
    with pytest.raises(ValueError, match="ISTANetPlus network, but --init .* holds a E2EVarNet"):
        initialise(ista, {"kind": "smug", "name": "s"}, str(path), "cpu")


# ---- bad config ----------------------------------------------------------------------------------


def _with_variant(method: str, settings: dict) -> dict:
    config = copy.deepcopy(CONFIG)
    config["ablations"]["experiments"] = {
        "x": {
            "methods": [method],
            "variants": [settings],
            "references": [],
            "figure": "bars",
            "diagnostics": False,
        }
    }
    return config


@pytest.mark.parametrize(
    "method, settings, message",
    [
        (
            "smug",
            {"model.backbone": "unrolled_net"},
            "unknown backbone 'unrolled_net'; valid: modl, varnet, ista",
        ),
        (
            "unet",
            {"model.backbone": "varnet"},
            "'unet' is a unet method, which the varnet backbone cannot take",
        ),
        (
            "denoiser",
            {"model.backbone": "ista"},
            "'denoiser' is a denoiser method, which the ista backbone cannot take",
        ),
        ("smug", {"model.backbone": "varnet", "init": "modl"}, "its init may only be null"),
    ],
    ids=["unknown_backbone", "unet_on_varnet", "denoiser_on_ista", "init_across_backbones"],
)
def test_a_backbone_a_method_cannot_take_is_one_line_naming_it(method, settings, message):
    with pytest.raises(ValueError) as error:
        experiment_models(_with_variant(method, settings))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith("config error: ablations.experiments.x.variants[0]")


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "model:\n  backbone: resnet\n",
            "config error: model.backbone: 'resnet' is not allowed; did you mean 'varnet'? valid: modl, varnet, ista",
        ),
        (
            "backbones:\n  methods: [smug, unet]\n",
            "config error: backbones.methods.1: 'unet' is not allowed; valid: modl, modl_pgd, smug",
        ),
    ],
    ids=["unknown_backbone", "method_no_backbone_takes"],
)
def test_the_workflow_stops_on_a_bad_backbone_config_with_one_line(tmp_path, text, message):
    workdir = copy_workflow(tmp_path)
    (workdir / "bad.yaml").write_text(text)
    result = snakemake(["-n", "backbones", "--configfile", "bad.yaml"], workdir, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and message in output, output[-2000:]
    assert len(output.strip().splitlines()) <= 6, output


# ---- claims about every backbone -----------------------------------------------------------------


def _scores(psnr: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = []
    for (model, perturbation), values in psnr.items():
        for seed in (0, 1):
            for volume, value in enumerate(values):
                rows.append(
                    {
                        "model": model,
                        "perturbation": perturbation,
                        "level": 0.02 if perturbation != "clean" else 0.0,
                        "metric": "PSNR",
                        "value": value + 0.01 * seed,
                        "seed": seed,
                        "volume": f"v{volume}",
                        "n_slices": 2,
                    }
                )
    return pd.DataFrame(rows)


EVERY_BACKBONE = {
    "id": "every",
    "source": "test",
    "statement": "a beats b on every pair",
    "kind": "difference",
    "source_table": "backbones",
    "each": True,
    "a": ["a1", "a2"],
    "b": ["b1", "b2"],
    "perturbation": "attack",
    "level": 0.02,
    "metric": "PSNR",
    "direction": "greater",
    "threshold": 0.0,
}


def test_a_claim_about_every_pair_is_the_least_favourable_pairs_effect():
    noise = [0.0, 0.3, -0.2, 0.1]
    scores = _scores(
        {
            ("a1", "attack"): [25 + n for n in noise],
            ("b1", "attack"): [22 + n for n in noise],  # +3 dB
            ("a2", "attack"): [20.5 + n for n in noise],
            ("b2", "attack"): [20 + n for n in noise],  # +0.5 dB: the worst pair
        }
    )
    table = evaluate_claims(scores, [EVERY_BACKBONE], backbone_scores=scores)
    row = table.iloc[0]
    assert math.isclose(row["effect"], 0.5, abs_tol=1e-9) and row["verdict"] == "supported"
    assert "smallest over the pairs (a1 vs b1; a2 vs b2)" in row["conditions"]
    averaged = evaluate_claims(scores, [{**EVERY_BACKBONE, "each": False}], backbone_scores=scores)
    assert math.isclose(averaged.iloc[0]["effect"], 1.75, abs_tol=1e-9)
    not_run = evaluate_claims(scores, [EVERY_BACKBONE])
    assert not_run.iloc[0]["verdict"] == "not run" and "snakemake backbones" in not_run.iloc[0]["note"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"b": ["b1"]}, "claims[every].each: pairs a and b model by model"),
        (
            {
                "kind": "correlation",
                "models": ["a1", "a2", "b1"],
                "x": {"perturbation": "clean"},
                "y": {"perturbation": "clean"},
            },
            "claims[every].each: applies to difference and drop_difference claims",
        ),
        ({"each": "yes"}, "claims[every].each: 'yes' is not true or false"),
    ],
    ids=["unequal_lists", "wrong_kind", "not_boolean"],
)
def test_a_malformed_every_pair_claim_is_named(change, message):
    claim = {**EVERY_BACKBONE, **change}
    if claim["kind"] == "correlation":
        for key in ("a", "b", "perturbation", "level"):
            claim.pop(key)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_claims([claim])


def test_the_backbone_claims_of_the_config_name_scored_models():
    claims = [c for c in CONFIG["claims"] if c.get("source_table") == "backbones"]
    assert {c["id"] for c in claims} == {"smug_robust_every_backbone", "smug_clean_every_backbone"}
    check_claims(claims, CONFIG)
    bad = copy.deepcopy(claims[0])
    bad["a"] = ["smug", "smug@model.backbone=varnet", "smug@model.backbone=unet"]
    with pytest.raises(ValueError, match="'smug@model.backbone=unet' is not a model of the backbones"):
        check_claims([bad], CONFIG)


# ---- the target end to end -----------------------------------------------------------------------


@pytest.mark.slow
def test_snakemake_backbones_trains_scores_and_tabulates_every_method_on_every_backbone(tmp_path):
    workdir = copy_workflow(tmp_path)
    config = {**TINY_CONFIG, "seeds": [0, 1]}
    write_config(workdir, config)
    result = snakemake(["backbones", "--cores", "2", "--configfile", "tiny.yaml"], workdir, timeout=1500)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    table = pd.read_csv(workdir / "results/tables/backbones.csv")
    expected = {m.name for m in backbone_models(deep_update(CONFIG, config))}
    assert set(table["model"]) == expected and len(expected) == 7 and "diffusion" in expected
    on_backbones = table[table["role"] == "variant"]
    assert {backbone_of_setting(s) for s in on_backbones["setting"]} == {"modl", "varnet", "ista"}
    assert "backbone=varnet, lambda_rec=10" in set(table["setting"])  # its departure, stated
    attacked = table[table["perturbation"] == "pgd_kspace_linf_journal"]
    assert set(attacked["model"]) == expected and (attacked["n_seeds"] == 2).all()
    # the diffusion sampler is scored under MoDL's attacks, transferred, and their random noise
    assert set(attacked[attacked["model"] == "diffusion"]["protocol"]) == {"transfer"}
    assert set(attacked[attacked["model"] != "diffusion"]["protocol"]) == {"journal protocol"}
    noise = table[(table["model"] == "diffusion") & (table["protocol"] == "random noise")]
    assert set(noise["perturbation"]) == {"noise_kspace_linf", "noise_image_linf"}
    health = pd.read_csv(workdir / "results/tables/backbone_health.csv")
    assert set(health["model"]) == expected
    claims = pd.read_csv(workdir / "results/tables/backbone_claims.csv")
    assert list(claims["id"]) == ["smug_robust_every_backbone", "smug_clean_every_backbone"]
    assert set(claims["verdict"]) <= {"supported", "contradicted", "inconclusive"}
    assert np.isfinite(claims["effect"]).all()
    assert (workdir / "results/figures/backbones.png").stat().st_size > 10_000


def test_on_another_backbone_the_run_scores_no_unroll_count_shift_and_a_claim_on_it_is_named():
    from smug.study import evaluated_conditions

    assert "unrolls" in evaluated_conditions(CONFIG)["smug"]
    config = copy.deepcopy(CONFIG)
    config["model"]["backbone"] = "ista"  # its phases have their own weights: no count to change
    assert "unrolls" not in evaluated_conditions(config)["smug"]
    claim = next(c for c in CONFIG["claims"] if c["id"] == "smug_stable_unrolls")
    with pytest.raises(ValueError, match=r"claims\[smug_stable_unrolls\].*is not evaluated under 'unrolls'"):
        check_claims([claim], config)


class Silent(torch.nn.Module):
    """A regulariser that proposes no correction."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(image)


def test_under_an_image_domain_perturbation_varnets_data_consistency_pulls_towards_the_perturbed_data(gen):
    """As MoDL's data consistency pulls towards the perturbed A^H y, VarNet's pulls towards the
    k-space of that image (physics.kspace_input), not towards the clean y."""
    batch = multicoil_batch(gen)
    model = network("varnet")
    for cascade in model.cascades:
        cascade.model = Silent()  # only the soft data consistency acts
        with torch.no_grad():
            cascade.dc_weight.fill_(1.0)
    delta = 0.05 * random_complex(batch.target.shape, gen)
    physics = batch.physics.with_zero_filled(batch.physics.zero_filled_image(batch.kspace) + delta)
    with torch.no_grad():
        out = model(batch.kspace, physics)
    # With y' = physics.kspace_input(y), every cascade keeps y' (its residual on the sampled columns
    # is zero), so the output is the coil combination of y'; pulled towards y it would not be.
    measured = physics.kspace_input(batch.kspace)
    torch.testing.assert_close(out, sens_combine(ifft2c(measured), batch.sens_maps))
    clean = sens_combine(ifft2c(batch.kspace), batch.sens_maps)
    assert (out - clean).abs().max() > 0.01


def test_a_backbones_departures_reach_its_models_specs_but_not_their_names():
    config = copy.deepcopy(CONFIG)
    config["backbones"]["settings"] = {"varnet": {"training.lambda_rec": 10.0}}
    models = {m.name: m for m in backbone_models(config)}
    method, settings, init = model_setup("smug@model.backbone=varnet", config)
    assert spec_settings(method, settings)["training"]["lambda_rec"] == 10.0
    assert init == "modl@model.backbone=varnet" and "modl@model.backbone=varnet" in models
    assert models["smug@model.backbone=varnet"].label == "backbone=varnet, lambda_rec=10"
    assert (
        spec_settings(*model_setup("smug@model.backbone=ista", config)[:2])["training"]["lambda_rec"] == 1.0
    )
    config["backbones"]["settings"]["modl"] = {"training.lambda_rec": 2.0}
    with pytest.raises(
        ValueError,
        match=r"config error: backbones.settings.modl: the modl backbone's models are the main ones",
    ):
        backbone_models(config)


def test_a_departure_reaches_only_the_models_that_read_it():
    config = copy.deepcopy(CONFIG)
    config["backbones"]["settings"] = {"varnet": {"training.lambda_rec": 10.0, "training.epochs.smug": 5}}
    models = {m.name: m for m in backbone_models(config)}
    # SMUG reads both; its stage's epochs read as epochs
    assert models["smug@model.backbone=varnet"].label == "backbone=varnet, epochs=5, lambda_rec=10"
    assert spec_settings(*model_setup("smug@model.backbone=varnet", config)[:2])["training"]["epochs"] == 5
    # vanilla MoDL and RS-E2E read neither, so neither names them
    assert models["modl@model.backbone=varnet"].label == "backbone=varnet"
    assert models["rs_e2e@model.backbone=varnet"].label == "backbone=varnet"
    weighted = spec_settings(*model_setup("weighted_smug@model.backbone=varnet", config)[:2])["training"]
    assert weighted["lambda_rec"] == 10.0 and weighted["epochs"] == CONFIG["training"]["epochs"]["weighted_smug"]


def test_an_ablation_variant_that_names_a_backbone_model_with_other_settings_is_refused():
    from smug.study import variant_models

    config = _with_variant("smug", {"model.backbone": "varnet"})
    config["backbones"]["settings"] = {"varnet": {"training.lambda_rec": 10.0}}
    with pytest.raises(
        ValueError, match=r"smug@model.backbone=varnet is named twice with different settings"
    ):
        variant_models(config)
