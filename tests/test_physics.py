"""The reconstructor interface: ``model(y, physics, **options)`` over :class:`smug.mri.MRIPhysics`."""

import pytest
import torch
from torch import nn

from smug.attacks import pgd_image_attack, pgd_kspace_attack, reconstruct_perturbed
from smug.data import Batch
from smug.models import DnCNN, MoDL, UnrollTrace, ZeroFilled
from smug.models.reconstruct import reconstruct
from smug.mri import MRIPhysics, adjoint_operator, fft2c, forward_operator, ifft2c, sens_combine
from smug.mri.data_consistency import data_consistency
from tests.conftest import random_complex, random_sens_maps

B, C, H, W = 2, 3, 8, 10


def _physics(gen, coils=C, per_sample_mask=True) -> tuple[torch.Tensor, MRIPhysics]:
    mask = torch.rand((B, W) if per_sample_mask else (W,), generator=gen) < 0.5
    sens = None if coils is None else random_sens_maps(B, coils, H, W, gen)
    physics = MRIPhysics(mask, sens)
    return physics.A(random_complex((B, H, W), gen)), physics


@pytest.mark.parametrize("coils", [None, C])
def test_operators_are_the_functions_of_smug_mri(coils, gen):
    kspace, physics = _physics(gen, coils)
    x = random_complex((B, H, W), gen)
    torch.testing.assert_close(physics.A(x), forward_operator(x, physics.mask, physics.sens_maps))
    torch.testing.assert_close(
        physics.A_adjoint(kspace), adjoint_operator(kspace, physics.mask, physics.sens_maps)
    )
    torch.testing.assert_close(physics.A_adjoint_A(x), physics.A_adjoint(physics.A(x)))
    inner = (physics.A(x).conj() * kspace).sum(), (x.conj() * physics.A_adjoint(kspace)).sum()
    torch.testing.assert_close(*inner)
    z, lam = random_complex((B, H, W), gen), 0.7
    aty = physics.A_adjoint(kspace)
    torch.testing.assert_close(
        physics.data_consistency(z, aty, lam, max_iter=5),
        data_consistency(z, aty, physics.mask, lam, physics.sens_maps, max_iter=5),
    )


def test_zero_filled_image_is_the_adjoint_unless_perturbed(gen):
    kspace, physics = _physics(gen)
    assert torch.equal(physics.zero_filled_image(kspace), physics.A_adjoint(kspace))
    perturbed_image = physics.A_adjoint(kspace) + 0.1
    perturbed = physics.with_zero_filled(perturbed_image)
    assert perturbed.zero_filled_image(kspace) is perturbed_image
    assert physics.zero_filled is None, "with_zero_filled must leave the original physics as it was"


@pytest.mark.parametrize("coils", [None, C])
def test_kspace_input_combines_to_the_perturbed_image(coils, gen):
    """A k-space network under an image-domain attack starts from k-space whose coil combination is
    the perturbed ``A^H y`` (exactly for single-coil; for maps with ``sum |S|^2 = 1`` in general)."""
    kspace, physics = _physics(gen, coils)
    assert physics.kspace_input(kspace) is kspace
    perturbed_image = physics.A_adjoint(kspace) + random_complex((B, H, W), gen)
    start = physics.with_zero_filled(perturbed_image).kspace_input(kspace)
    coil_images = ifft2c(start)
    combined = coil_images.squeeze(1) if coils is None else sens_combine(coil_images, physics.sens_maps)
    torch.testing.assert_close(combined, perturbed_image)


@pytest.mark.parametrize("per_sample_mask", [False, True])
def test_repeat_and_select_follow_the_stacked_measurements(per_sample_mask, gen):
    kspace, physics = _physics(gen, per_sample_mask=per_sample_mask)
    physics = physics.with_zero_filled(physics.A_adjoint(kspace) + 0.5)
    copies = physics.repeat(3)
    torch.testing.assert_close(
        copies.A_adjoint(kspace.repeat(3, 1, 1, 1)), physics.A_adjoint(kspace).repeat(3, 1, 1)
    )
    torch.testing.assert_close(copies.zero_filled, physics.zero_filled.repeat(3, 1, 1))
    one = physics.select(1)
    assert (
        one.mask.shape == (W,) and one.sens_maps.shape == (1, C, H, W) and one.zero_filled.shape == (1, H, W)
    )
    torch.testing.assert_close(one.A_adjoint(kspace[1:2]), physics.A_adjoint(kspace)[1:2])


class KspaceCascade(nn.Module):
    """A toy k-space network (one soft data-consistency cascade with a learned weight): it starts
    from ``physics.kspace_input(y)`` and never looks at ``A^H y``, the way E2E-VarNet is built."""

    def __init__(self):
        super().__init__()
        self.step = nn.Parameter(torch.tensor(0.5))

    def forward(self, kspace: torch.Tensor, physics: MRIPhysics) -> torch.Tensor:
        start = physics.kspace_input(kspace)
        residual = physics.A(physics.A_adjoint(start)) - kspace
        coil_kspace = start - self.step * residual
        coil_images = ifft2c(coil_kspace)
        if physics.sens_maps is None:
            return coil_images.squeeze(1)
        return sens_combine(coil_images, physics.sens_maps)


def test_a_kspace_network_fits_the_interface_without_special_cases(gen):
    """Clean reconstruction, both attack domains and the gradient all go through the one interface."""
    kspace, physics = _physics(gen, coils=None)
    batch = Batch(
        kspace=kspace.to(torch.complex64),
        mask=physics.mask,
        target=torch.zeros(B, H, W, dtype=torch.complex64),
    )
    model = KspaceCascade()
    clean = reconstruct(model, batch, torch.Generator().manual_seed(0))
    # Unperturbed, the image a single-coil network sees first is exactly the zero-filled one.
    torch.testing.assert_close(
        reconstruct_perturbed(model, batch, torch.zeros(B, H, W, dtype=torch.complex64), "image"), clean
    )
    for attack, domain in ((pgd_image_attack, "image"), (pgd_kspace_attack, "kspace")):
        delta = attack(model, batch, eps=0.05, steps=2, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            attacked = reconstruct_perturbed(model, batch, delta, domain)
        assert (attacked - batch.target).abs().pow(2).sum() > (clean - batch.target).abs().pow(2).sum()


def test_options_reach_only_the_models_that_declare_them(gen):
    """``reconstruct`` gives the generator to randomised models only and ``trace``/``num_unrolls``
    only when asked; a model that does not declare an option it is asked for fails loudly."""
    kspace, physics = _physics(gen, coils=None)
    batch = Batch(kspace=kspace.to(torch.complex64), mask=physics.mask)
    zero_filled = ZeroFilled()
    torch.testing.assert_close(
        reconstruct(zero_filled, batch, torch.Generator()), batch.physics.A_adjoint(batch.kspace)
    )
    with pytest.raises(TypeError, match="num_unrolls"):
        reconstruct(zero_filled, batch, num_unrolls=2)
    smug = MoDL(DnCNN(num_chans=4, num_layers=2), num_unrolls=2, smoothing="smug", num_samples=2)
    runs = [reconstruct(smug, batch, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(*runs), "the generator must reach a randomised model"
    trace = UnrollTrace()
    reconstruct(smug, batch, torch.Generator().manual_seed(3), trace, num_unrolls=1)
    assert len(trace.inputs) == 1
