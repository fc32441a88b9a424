"""ISTA-Net+ (smug.models.ista_net): its gradient step, soft thresholding, symmetry loss, interface."""

from __future__ import annotations

import pytest
import torch

from smug.attacks import pgd_image_attack, pgd_kspace_attack, reconstruct_perturbed
from smug.data import Batch
from smug.models import E2EVarNet, ISTANetPlus, UnrollTrace, symmetry_loss
from smug.models.reconstruct import reconstruct
from smug.mri import MRIPhysics
from smug.training import objectives
from smug.training.objectives import complex_mse, end_to_end_loss
from tests.conftest import random_complex, random_sens_maps


def _batch(gen, coils=None, h=12, w=12):
    mask = torch.zeros(w, dtype=torch.bool)
    mask[::2] = True
    sens = None if coils is None else random_sens_maps(2, coils, h, w, gen, torch.complex64)
    target = random_complex((2, h, w), gen, torch.complex64)
    return Batch(kspace=MRIPhysics(mask, sens).A(target), mask=mask, target=target, sens_maps=sens)


@pytest.mark.parametrize("coils", [None, 3])
def test_a_phase_whose_transform_thresholds_everything_is_the_gradient_step(coils, gen):
    """With theta above every coefficient the learned correction vanishes: ``x - rho (A^H A x - A^H y)``."""
    batch = _batch(gen, coils)
    model = ISTANetPlus(num_phases=1, num_filters=4, step=0.7, threshold=1e6)
    physics = batch.physics
    start = random_complex((2, 12, 12), gen, torch.complex64)
    aty = physics.A_adjoint(batch.kspace)
    with torch.no_grad():
        out = model.phases[0](start, aty, physics, None)
    torch.testing.assert_close(out, start - 0.7 * (physics.A_adjoint_A(start) - aty))


def test_the_trace_collects_one_symmetry_residual_per_phase_and_the_loss_trains(gen):
    batch = _batch(gen)
    model = ISTANetPlus(num_phases=3, num_filters=4)
    trace = UnrollTrace()
    recon = reconstruct(model, batch, torch.Generator(), trace)
    assert recon.shape == (2, 12, 12) and len(trace.symmetry) == 3
    loss = symmetry_loss(trace)
    assert loss > 0
    loss.backward()
    assert model.phases[0].forward_transform[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="no symmetry residuals"):
        symmetry_loss(UnrollTrace())


def test_the_supervised_loss_adds_the_symmetry_term_for_ista_net_only(gen, monkeypatch):
    """ISTA-Net+ trains under its symmetry constraint; a backbone without one records no trace."""
    batch = _batch(gen)
    model = ISTANetPlus(num_phases=2, num_filters=4, symmetry_weight=0.5)
    with torch.no_grad():
        trace = UnrollTrace()
        recon = reconstruct(model, batch, None, trace)
        expected = complex_mse(recon, batch.target) + 0.5 * symmetry_loss(trace)
        torch.testing.assert_close(end_to_end_loss(model, batch, None), expected)
    traces = []
    monkeypatch.setattr(objectives, "reconstruct", lambda m, b, g, t: traces.append(t) or b.target)
    end_to_end_loss(E2EVarNet(num_cascades=1, chans=4, pools=1, estimate_sens=False), batch, None)
    assert traces == [None]


def test_ista_net_is_attacked_through_the_one_interface(gen):
    batch = _batch(gen, coils=3)
    model = ISTANetPlus(num_phases=2, num_filters=4)
    for attack, domain in ((pgd_kspace_attack, "kspace"), (pgd_image_attack, "image")):
        delta = attack(model, batch, eps=0.05, steps=1, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert torch.isfinite(reconstruct_perturbed(model, batch, delta, domain)).all()


def test_impossible_sizes_are_refused():
    with pytest.raises(ValueError, match="num_phases >= 1"):
        ISTANetPlus(num_phases=0)
