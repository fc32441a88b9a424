"""End-to-end U-Net baseline, perturbation generator and generator min-max adversarial training."""

from __future__ import annotations

import copy

import pytest
import torch

from smug.training import complex_mse, generator_ascent_step, hinge_penalty, minmax_step, MinMaxObjective
from smug.training import reconstructor_objective
from smug.attacks import kspace_perturbation, perturb_input
from smug.data import Batch
from smug.models import ZeroFilledUNet, PerturbationGenerator
from smug.mri import MRIPhysics, adjoint_operator, forward_operator
from tests.conftest import random_complex, random_sens_maps

SIZE = 32


def make_batch(
    gen: torch.Generator, coils: int | None = None, batch: int = 2, h: int = SIZE, w: int = SIZE
) -> Batch:
    """A random batch: target with max magnitude 1, a column mask, measured k-space."""
    target = random_complex((batch, h, w), gen, torch.complex64)
    target = target / target.abs().amax(dim=(-2, -1), keepdim=True)
    mask = torch.rand((batch, w), generator=gen) < 0.4
    mask[:, w // 2 - 2 : w // 2 + 2] = True
    sens_maps = None if coils is None else random_sens_maps(batch, coils, h, w, gen, torch.complex64)
    return Batch(
        kspace=forward_operator(target, mask, sens_maps),
        mask=mask,
        target=target,
        sens_maps=sens_maps,
        fnames=["a"] * batch,
        slices=list(range(batch)),
    )


def tiny_unet(input_mode: str = "complex") -> ZeroFilledUNet:
    return ZeroFilledUNet(input_mode, chans=4, num_pool_layers=2)


def tiny_generator(
    out_chans: int = 2, h: int = SIZE, w: int = SIZE, scale: float = 0.1
) -> PerturbationGenerator:
    return PerturbationGenerator(
        (h, w), latent_dim=8, out_chans=out_chans, features=4, num_upsamples=3, output_scale=scale
    )


@pytest.mark.parametrize("shape", [(32, 32), (40, 24), (21, 35)])
@pytest.mark.parametrize("out_chans", [1, 2])
def test_generator_output_shape_and_range(shape, out_chans, gen):
    net = PerturbationGenerator(
        shape, latent_dim=8, out_chans=out_chans, features=4, num_upsamples=3, output_scale=0.5
    )
    out = net(net.sample_latent(3, gen))
    assert out.shape == (3, out_chans, *shape)
    assert out.abs().max() <= 0.5
    assert out.std() > 0


def test_generator_rejects_bad_arguments(gen):
    with pytest.raises(ValueError, match="out_chans"):
        PerturbationGenerator((32, 32), out_chans=3)
    with pytest.raises(ValueError, match="num_upsamples"):
        PerturbationGenerator((8, 8), latent_dim=8, num_upsamples=3)
    net = tiny_generator()
    with pytest.raises(ValueError, match="latent"):
        net(torch.zeros(2, 9))


def test_generator_latent_is_seeded():
    net = tiny_generator()
    a = net.sample_latent(2, torch.Generator().manual_seed(3))
    b = net.sample_latent(2, torch.Generator().manual_seed(3))
    assert a.shape == (2, 8)
    assert torch.equal(a, b)


def test_hinge_penalty_inside_and_outside_ball():
    inside = torch.full((2, 1, 2, 2), 0.5)  # squared norm 1 per sample
    assert hinge_penalty(inside, eps=1.0).item() == 0.0
    assert hinge_penalty(inside, eps=2.0).item() == 0.0
    outside = torch.stack([torch.full((2, 2, 2), 1.0), torch.full((2, 2, 2), 0.5)])  # energies 8 and 2
    # relu(8 - 3) = 5 and relu(2 - 3) = 0, averaged over the batch
    assert hinge_penalty(outside, eps=3.0).item() == pytest.approx(2.5)
    complex_p = torch.full((1, 2, 2), 1 + 1j, dtype=torch.complex64)  # energy 8
    assert hinge_penalty(complex_p, eps=5.0).item() == pytest.approx(3.0)


@pytest.mark.parametrize("coils", [None, 3])
def test_kspace_perturbation_zero_off_mask(coils, gen):
    batch = make_batch(gen, coils)
    perturbation = tiny_generator(2)(tiny_generator(2).sample_latent(2, gen))
    delta = kspace_perturbation(perturbation, batch.mask, batch.sens_maps)
    assert delta.shape == batch.kspace.shape
    off = ~batch.mask[:, None, None, :].expand_as(delta)
    assert delta[off].abs().max() == 0
    assert delta[~off].abs().max() > 0
    # the perturbed zero-filled image is that of the perturbed measurements
    zero_filled = perturb_input(batch, perturbation, "kspace")
    expected = adjoint_operator(batch.kspace + delta, batch.mask, batch.sens_maps)
    torch.testing.assert_close(zero_filled, expected)


def test_perturb_input_image_domain(gen):
    batch = make_batch(gen)
    clean = adjoint_operator(batch.kspace, batch.mask)
    real_p = torch.randn((2, 1, SIZE, SIZE), generator=gen)
    out = perturb_input(batch, real_p, "image")
    torch.testing.assert_close(out - clean, torch.complex(real_p[:, 0], torch.zeros_like(real_p[:, 0])))
    complex_p = torch.randn((2, 2, SIZE, SIZE), generator=gen)
    out = perturb_input(batch, complex_p, "image")
    torch.testing.assert_close(out - clean, torch.complex(complex_p[:, 0], complex_p[:, 1]))


def test_perturb_input_rejects_bad_input(gen):
    batch = make_batch(gen)
    with pytest.raises(ValueError, match="domain"):
        perturb_input(batch, torch.zeros(2, 2, SIZE, SIZE), "sinogram")
    with pytest.raises(ValueError, match="2-channel"):
        perturb_input(batch, torch.zeros(2, 1, SIZE, SIZE), "kspace")
    with pytest.raises(ValueError, match="does not fit"):
        perturb_input(batch, torch.zeros(2, 2, SIZE, SIZE + 1), "image")


@pytest.mark.parametrize("input_mode", ["magnitude", "complex"])
@pytest.mark.parametrize("coils", [None, 4])
def test_zero_filled_unet_shapes_and_gradients(input_mode, coils, gen):
    batch = make_batch(gen, coils)
    model = tiny_unet(input_mode)
    zero_filled = adjoint_operator(batch.kspace, batch.mask, batch.sens_maps).requires_grad_()
    out = model(batch.kspace, MRIPhysics(batch.mask, batch.sens_maps, zero_filled=zero_filled))
    assert out.shape == (2, SIZE, SIZE) and out.dtype == torch.complex64
    if input_mode == "magnitude":
        assert out.imag.abs().max() == 0
    complex_mse(out, batch.target).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model.unet.up_blocks[-1][-1].weight.grad.abs().sum() > 0
    assert zero_filled.grad is not None and zero_filled.grad.abs().sum() > 0  # white-box attacks need it
    # without zero_filled the model computes A^H y itself
    torch.testing.assert_close(model(batch.kspace, batch.physics), out.detach())


@pytest.mark.parametrize("input_mode", ["magnitude", "complex"])
def test_zero_filled_unet_undoes_normalisation(input_mode, gen):
    """Instance normalisation in, de-normalisation out: scaling the input scales the output."""
    batch = make_batch(gen)
    model = tiny_unet(input_mode).eval()
    with torch.no_grad():
        base = model(batch.kspace, MRIPhysics(batch.mask))
        scaled = model(7.0 * batch.kspace, MRIPhysics(batch.mask))
    torch.testing.assert_close(scaled, 7.0 * base, rtol=1e-4, atol=1e-5)


def test_zero_filled_unet_rejects_unknown_mode():
    with pytest.raises(ValueError, match="input_mode"):
        ZeroFilledUNet("phase")


@pytest.mark.parametrize("domain", ["image", "kspace"])
def test_minmax_step_ascends_then_descends(domain, gen):
    torch.manual_seed(0)
    batch = make_batch(gen, coils=2 if domain == "kspace" else None)
    recon, generator_net = tiny_unet("complex"), tiny_generator(2, scale=0.5)
    recon_opt = torch.optim.Adam(recon.parameters(), lr=1e-3)
    gen_opt = torch.optim.Adam(generator_net.parameters(), lr=1e-3)
    latent = generator_net.sample_latent(2, gen)
    recon_before, gen_before = copy.deepcopy(recon), copy.deepcopy(generator_net)
    eps = 1e6  # the hinge is inactive, so the generator's objective is the perturbed loss

    def perturbed_loss(model, perturbation):
        with torch.no_grad():
            return complex_mse(
                model(
                    batch.kspace,
                    MRIPhysics(
                        batch.mask, batch.sens_maps, zero_filled=perturb_input(batch, perturbation, domain)
                    ),
                ),
                batch.target,
            ).item()

    stats = minmax_step(
        recon,
        generator_net,
        batch,
        recon_opt,
        gen_opt,
        eps=eps,
        alpha=1.0,
        penalty_weight=1.0,
        domain=domain,
        latent=latent,
    )
    assert set(stats) >= {"clean_loss", "adv_loss", "penalty", "gen_objective"}
    assert stats["penalty"] == 0.0

    with torch.no_grad():
        p_before, p_after = gen_before(latent), generator_net(latent)
    assert not torch.equal(p_before, p_after)
    # generator step: against the frozen (pre-step) reconstructor the perturbed loss went up
    assert perturbed_loss(recon_before, p_after) > 1.005 * perturbed_loss(recon_before, p_before)
    assert stats["gen_objective"] == pytest.approx(perturbed_loss(recon_before, p_before), rel=1e-5)
    # reconstructor step: with the generator fixed at its new state the objective went down
    with torch.no_grad():
        before, _, _ = reconstructor_objective(recon_before, batch, p_after, alpha=1.0, domain=domain)
        after, _, _ = reconstructor_objective(recon, batch, p_after, alpha=1.0, domain=domain)
    assert after.item() < 0.995 * before.item()
    assert stats["clean_loss"] + stats["adv_loss"] == pytest.approx(before.item(), rel=1e-5)


def test_generator_step_penalty_pulls_into_the_ball(gen):
    """With a dominant hinge the ascent step shrinks the perturbation instead of growing the loss."""
    batch = make_batch(gen)
    recon = tiny_unet("complex")
    generator_net = PerturbationGenerator(
        (SIZE, SIZE), latent_dim=8, out_chans=2, features=4, num_upsamples=3, learn_scale=True
    )
    gen_opt = torch.optim.Adam(generator_net.parameters(), lr=1e-3)
    latent = generator_net.sample_latent(2, gen)
    with torch.no_grad():
        energy_before = generator_net(latent).pow(2).sum().item()
    stats = generator_ascent_step(
        recon, generator_net, batch, gen_opt, latent, eps=0.0, penalty_weight=100.0, domain="image"
    )
    with torch.no_grad():
        energy_after = generator_net(latent).pow(2).sum().item()
    assert stats["penalty"] > 0
    assert energy_after < energy_before
    assert all(p.grad is None for p in recon.parameters())  # the reconstructor stayed frozen


def test_minmax_objective_drives_fit_style_loop_and_resumes(gen):
    batch = make_batch(gen)
    recon = tiny_unet("magnitude")
    objective = MinMaxObjective(tiny_generator(1), eps=1.0, alpha=0.5, lr=1e-3)
    state0 = copy.deepcopy(objective.state_dict())
    noise = torch.Generator().manual_seed(1)
    loss = objective(recon, batch, noise)
    assert loss.ndim == 0 and loss.requires_grad
    assert {"clean_loss", "adv_loss", "penalty", "gen_objective"} <= set(objective.last_stats)
    assert loss.item() == pytest.approx(
        objective.last_stats["clean_loss"] + 0.5 * objective.last_stats["adv_loss"]
    )
    # the generator moved; its gradients never reached the reconstructor's loss
    moved = objective.state_dict()["generator"]
    assert any(
        not torch.equal(moved[k], state0["generator"][k]) for k in moved if moved[k].is_floating_point()
    )
    gen_grads = [p.grad.clone() for p in objective.generator_net.parameters()]
    loss.backward()
    assert all(torch.equal(p.grad, g) for p, g in zip(objective.generator_net.parameters(), gen_grads))
    assert all(p.grad is not None for p in recon.parameters())

    saved = copy.deepcopy(objective.state_dict())
    restored = MinMaxObjective(tiny_generator(1), eps=1.0, alpha=0.5, lr=1e-3)
    restored.load_state_dict(saved)
    for key, value in restored.state_dict()["generator"].items():
        assert torch.equal(value, saved["generator"][key]), key
    assert restored.state_dict()["optimizer"]["state"].keys() == saved["optimizer"]["state"].keys()
    with pytest.raises(ValueError, match="optimizer"):
        restored.load_state_dict({"generator": saved["generator"]})
    with pytest.raises(ValueError, match="out_chans=2"):
        MinMaxObjective(tiny_generator(1), eps=1.0, domain="kspace")
