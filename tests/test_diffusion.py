"""The diffusion prior of smug.models.diffusion (library part of issue 26): its denoiser, the score
matching loss, the noise ladder and the sampler's data consistency."""

from __future__ import annotations


import pytest
import torch

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
        NoiseConditionalDenoiser(chans=4, num_pool_layers=2), steps=4, lam=1e-4, cg_max_iter=200, cg_tol=1e-10
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
        DiffusionReconstructor(NoiseConditionalDenoiser(4, 2), lam=0.0)
