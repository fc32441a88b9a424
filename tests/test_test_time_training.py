"""Test-time training: only sampled, non-held-out k-space shapes the weights; the caller's model is untouched."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import smug.evaluation.ttt as ttt
from smug.data import Batch
from smug.evaluation import volume_rows
from smug.models import build_model, ZeroFilled
from smug.mri import forward_operator, kspace_consistency_loss, split_mask
from tests.conftest import random_complex, random_sens_maps

H, W, COILS = 16, 16, 2
SETTINGS = dict(steps=4, lr=1e-3, holdout_fraction=0.2, patience=100, seed=3)


def _model(kind: str = "modl") -> torch.nn.Module:
    torch.manual_seed(0)
    model_cfg = {
        "denoiser": "dncnn",
        "denoiser_args": {"num_chans": 8, "num_layers": 3},
        "num_unrolls": 2,
        "lam": 0.05,
        "learn_lam": True,
        "cg_max_iter": 4,
        "cg_tol": 1e-6,
    }
    return build_model(kind, model_cfg, {"sigma": 0.01, "num_samples": 2}).eval()


def _batch(batch_size: int = 1) -> Batch:
    gen = torch.Generator().manual_seed(1)
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    inside = ((rows - 7.5) / 6) ** 2 + ((cols - 7.5) / 5) ** 2 <= 1
    target = (inside * (0.7 + 0.3 * torch.rand((batch_size, H, W), generator=gen))).to(torch.complex64)
    target = target / target.abs().amax(dim=(-2, -1), keepdim=True)
    mask = torch.zeros(W, dtype=torch.bool)
    mask[::2] = True
    mask[W // 2 - 1 : W // 2 + 2] = True
    sens = random_sens_maps(batch_size, COILS, H, W, gen, torch.complex64)
    return Batch(
        kspace=forward_operator(target, mask, sens),
        mask=mask,
        target=target,
        sens_maps=sens,
        fnames=[f"file{i}.h5" for i in range(batch_size)],
        slices=list(range(batch_size)),
    )


def _holdout_mask(batch: Batch, settings: dict) -> torch.Tensor:
    # The split test_time_adapt makes: same function, same seed.
    generator = torch.Generator().manual_seed(settings["seed"])
    return split_mask(batch.mask, settings["holdout_fraction"], generator)[1]


def test_loss_ignores_kspace_on_unsampled_columns():
    batch = _batch()
    gen = torch.Generator().manual_seed(5)
    image = random_complex((1, H, W), gen, torch.complex64)
    changed = batch.kspace.clone()
    changed[..., ~batch.mask] = random_complex(changed[..., ~batch.mask].shape, gen, torch.complex64)
    a = kspace_consistency_loss(image, batch.kspace, batch.mask, batch.sens_maps)
    b = kspace_consistency_loss(image, changed, batch.mask, batch.sens_maps)
    assert torch.equal(a, b)


def test_unsampled_kspace_changes_nothing_in_test_time_training():
    batch = _batch()
    changed = dataclasses.replace(batch, kspace=batch.kspace.clone())
    changed.kspace[..., ~batch.mask] = 5.0
    recon_a, info_a = ttt.test_time_train(_model(), batch, **SETTINGS)
    recon_b, info_b = ttt.test_time_train(_model(), changed, **SETTINGS)
    assert torch.equal(recon_a, recon_b)
    assert info_a["train_losses"] == info_b["train_losses"]


def test_held_out_columns_never_reach_the_weights():
    batch = _batch()
    holdout = _holdout_mask(batch, SETTINGS)
    assert holdout.sum() >= 1
    changed = dataclasses.replace(batch, kspace=batch.kspace.clone())
    # A small change keeps the held-out loss falling in both runs, so both keep their last step.
    changed.kspace[..., holdout] *= 1.02
    adapted_a, info_a = ttt.test_time_adapt(_model(), batch, **SETTINGS)
    adapted_b, info_b = ttt.test_time_adapt(_model(), changed, **SETTINGS)
    assert info_a["holdout_columns"] == torch.nonzero(holdout).flatten().tolist()
    assert info_a["holdout_losses"] != info_b["holdout_losses"]
    assert info_a["train_losses"] == info_b["train_losses"]
    assert info_a["steps"] == info_b["steps"] == SETTINGS["steps"]
    assert info_a["best_step"] == info_b["best_step"] == SETTINGS["steps"]
    state_a, state_b = adapted_a.state_dict(), adapted_b.state_dict()
    assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)


def test_adaptation_lowers_the_training_loss_and_keeps_the_best_check():
    recon, info = ttt.test_time_train(_model(), _batch(), **{**SETTINGS, "steps": 8, "lr": 3e-3})
    assert recon.shape == (1, H, W) and torch.is_complex(recon)
    assert info["final_train_loss"] < info["initial_train_loss"]
    assert info["best_holdout_loss"] == min(info["holdout_losses"])
    assert info["best_train_loss"] == info["train_losses"][info["best_step"]]
    assert len(info["train_losses"]) == info["steps"] + 1


def test_callers_model_is_unchanged_even_under_inference_mode():
    model = _model()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with torch.inference_mode():
        recon, info = ttt.test_time_train(model, _batch(), **SETTINGS)
    assert info["steps"] >= 1 and torch.isfinite(recon.abs()).all()
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert not model.training


def test_randomised_model_is_repeatable_with_the_same_seed():
    batch = _batch()
    settings = {**SETTINGS, "steps": 2}
    recon_a, _ = ttt.test_time_train(_model("smug"), batch, **settings)
    recon_b, _ = ttt.test_time_train(_model("smug"), batch, **settings)
    recon_c, _ = ttt.test_time_train(_model("smug"), batch, **{**settings, "seed": 4})
    assert torch.equal(recon_a, recon_b)
    assert not torch.equal(recon_a, recon_c)


def test_model_without_parameters_is_rejected():
    with pytest.raises(ValueError, match="ZeroFilled has no parameters to adapt"):
        ttt.test_time_train(ZeroFilled(), _batch(), **SETTINGS)


def test_invalid_settings_are_named():
    with pytest.raises(ValueError, match="holdout_fraction=1.0"):
        ttt.test_time_train(_model(), _batch(), **{**SETTINGS, "holdout_fraction": 1.0})
    with pytest.raises(ValueError, match="zero_filled"):
        ttt.test_time_train(
            _model(),
            dataclasses.replace(_batch(), zero_filled=torch.zeros(1, H, W, dtype=torch.complex64)),
            **SETTINGS,
        )


def test_ttt_reconstruct_returns_scorable_volumes():
    batch = _batch(batch_size=2)
    dataset = [
        {
            "kspace": batch.kspace[i],
            "mask": batch.mask,
            "sens_maps": batch.sens_maps[i],
            "target": batch.target[i],
            "fname": "file0.h5",
            "slice": i,
        }
        for i in (1, 0)
    ]
    infos: list = []
    settings = {"steps": 1, "lr": 1e-3, "holdout_fraction": 0.2, "patience": 5}
    volumes = ttt.ttt_reconstruct(
        _model(), dataset, torch.device("cpu"), 1, 0, settings, progress=None, infos=infos
    )
    assert list(volumes) == ["file0.h5"] and sorted(volumes["file0.h5"].slices) == [0, 1]
    assert [info["slice"] for info in infos] == [[1], [0]]
    rows = volume_rows(volumes, "modl+ttt", "clean", 0.0)
    assert {row["metric"] for row in rows} == {"NMSE", "PSNR", "SSIM"}
    with pytest.raises(ValueError, match="unknown test-time-training setting"):
        ttt.ttt_reconstruct(_model(), dataset, torch.device("cpu"), 1, 0, {**settings, "stepz": 1})
