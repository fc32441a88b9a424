"""PGD and random perturbations: norm balls, supports, gradients, randomised models."""

import dataclasses

import numpy as np
import pytest
import torch

from smug.attacks import apply_perturbation, attack_domain, attack_gradient, attack_loss, is_randomised
from smug.attacks import pgd_image_attack, pgd_kspace_attack, random_perturbation, reconstruct_perturbed
from smug.attacks import run_attack
from smug.study import ATTACKS
from smug.data import Batch, knee_phantom, sample_knee_params
from smug.mri import MRIPhysics, fft2c, adjoint_operator, forward_operator
from smug.models import DnCNN, RSE2E, MoDL
from smug.training import complex_mse
from tests.conftest import random_sens_maps

N = 16


def _mask(width: int = N) -> torch.Tensor:
    mask = torch.zeros(width, dtype=torch.bool)
    mask[::3] = True
    mask[width // 2 - 2 : width // 2 + 2] = True
    return mask


def _batch(count: int = 2, seed: int = 0, coils: int | None = None, dtype=torch.complex64) -> Batch:
    """Knee phantoms normalised to max |x| = 1, measured through the column mask."""
    rng = np.random.default_rng(seed)
    images = [knee_phantom(sample_knee_params(rng), (N, N), float(z)) for z in rng.uniform(-0.5, 0.5, count)]
    target = torch.from_numpy(np.stack(images)).to(dtype)
    target = target / target.abs().flatten(1).amax(1).reshape(-1, 1, 1)
    mask = _mask()
    sens = None
    if coils is not None:
        sens = random_sens_maps(count, coils, N, N, torch.Generator().manual_seed(seed), dtype)
    return Batch(
        kspace=forward_operator(target, mask, sens),
        mask=mask.expand(count, N).clone(),
        target=target,
        sens_maps=sens,
        fnames=[f"file{i}.h5" for i in range(count)],
        slices=list(range(count)),
    )


def _model(smoothing: str = "none", seed: int = 0) -> MoDL:
    torch.manual_seed(seed)
    denoiser = DnCNN(num_chans=4, num_layers=3)
    return MoDL(denoiser, num_unrolls=2, smoothing=smoothing, sigma=0.05, num_samples=3).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: on a shared machine, intra-op threads only fight each other (25x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained_model() -> MoDL:
    """A toy MoDL fitted for a few dozen steps, so it reconstructs better than its input."""
    model = _model().train()
    batch = _batch(count=4, seed=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        optimiser.zero_grad()
        loss = complex_mse(model(batch.kspace, MRIPhysics(batch.mask)), batch.target)
        loss.backward()
        optimiser.step()
    return model.eval()


def _sampled_norm(delta: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(delta.flatten(1), dim=1)


# -- norm balls and supports ------------------------------------------------------------------


@pytest.mark.parametrize("coils", [None, 3])
def test_linf_kspace_pgd_stays_in_box_and_on_mask(coils):
    batch = _batch(coils=coils)
    eps = 0.02
    delta = pgd_kspace_attack(
        _model(), batch, eps, "linf", steps=3, generator=torch.Generator().manual_seed(0)
    )
    assert delta.shape == batch.kspace.shape and delta.dtype == torch.complex64
    assert delta.real.abs().max() <= eps + 1e-7 and delta.imag.abs().max() <= eps + 1e-7
    # Signed steps push most entries of the sampled columns to the box's faces.
    sampled = delta[..., _mask()]
    assert (sampled.real.abs() > 0.99 * eps).float().mean() > 0.5
    assert torch.count_nonzero(delta[..., ~_mask()]) == 0


@pytest.mark.parametrize("relative", [False, True])
def test_l2_kspace_pgd_stays_in_ball_and_on_mask(relative):
    batch = _batch()
    eps = 0.05 if relative else 0.3
    delta = pgd_kspace_attack(
        _model(), batch, eps, "l2", steps=4, relative=relative, generator=torch.Generator().manual_seed(0)
    )
    radius = eps * _sampled_norm(batch.kspace) if relative else torch.full((2,), eps)
    norms = _sampled_norm(delta)
    assert torch.all(norms <= radius * (1 + 1e-5))
    assert torch.all(norms >= 0.9 * radius)  # ascent steps of 2.5 eps / steps end on the sphere
    assert torch.count_nonzero(delta[..., ~_mask()]) == 0


def test_image_pgd_stays_in_box():
    batch = _batch()
    eps = 1 / 255
    delta = pgd_image_attack(
        _model(), batch, eps, "linf", steps=3, generator=torch.Generator().manual_seed(0)
    )
    assert delta.shape == batch.target.shape
    assert delta.real.abs().max() <= eps + 1e-7 and delta.imag.abs().max() <= eps + 1e-7
    # The image domain has no support constraint: the perturbation reaches unsampled frequencies.
    assert fft2c(delta)[..., ~_mask()].abs().max() > 1e-4


# -- effect on the loss -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "attack, domain, eps", [(pgd_kspace_attack, "kspace", 0.03), (pgd_image_attack, "image", 2 / 255)]
)
def test_pgd_increases_loss_over_clean(trained_model, attack, domain, eps):
    batch = _batch(seed=3)
    delta = attack(trained_model, batch, eps, "linf", steps=5, generator=torch.Generator().manual_seed(0))
    clean = attack_loss(trained_model, batch, None, batch.target, domain)
    attacked = attack_loss(trained_model, batch, delta, batch.target, domain)
    assert torch.all(attacked > clean * 1.05)


@pytest.mark.parametrize(
    "attack, kwargs",
    [
        (pgd_kspace_attack, dict(norm="linf")),
        (pgd_kspace_attack, dict(norm="l2")),
        (pgd_kspace_attack, dict(norm="l2", relative=True)),
        (pgd_image_attack, dict(norm="linf")),
    ],
)
def test_zero_eps_reproduces_the_clean_reconstruction(attack, kwargs):
    model, batch = _model(), _batch()
    delta = attack(model, batch, 0.0, steps=2, generator=torch.Generator().manual_seed(0), **kwargs)
    assert torch.count_nonzero(delta) == 0
    domain = "image" if attack is pgd_image_attack else "kspace"
    with torch.no_grad():
        clean = model(batch.kspace, MRIPhysics(batch.mask))
        perturbed = reconstruct_perturbed(model, batch, delta, domain)
    assert torch.equal(perturbed, clean)


def test_clean_target_starts_at_zero_loss_and_increases(trained_model):
    batch = _batch(seed=4)
    with torch.no_grad():
        clean = trained_model(batch.kspace, MRIPhysics(batch.mask))
    _, start_loss = attack_gradient(trained_model, batch, torch.zeros_like(batch.kspace), clean)
    assert torch.all(start_loss == 0)
    delta = pgd_kspace_attack(
        trained_model,
        batch,
        0.05,
        "l2",
        steps=5,
        loss_target="clean",
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.all(attack_loss(trained_model, batch, delta, clean) > 1e-4)


@pytest.mark.parametrize("norm, eps", [("linf", 0.01), ("l2", 0.2)])
def test_pgd_beats_random_noise_of_the_same_size(trained_model, norm, eps):
    batch = _batch(seed=5)
    gen = torch.Generator().manual_seed(0)
    delta = pgd_kspace_attack(trained_model, batch, eps, norm, steps=5, generator=gen)
    worst_case = attack_loss(trained_model, batch, delta, batch.target)
    noise_losses = torch.stack(
        [
            attack_loss(
                trained_model, batch, random_perturbation(batch, eps, norm, generator=gen), batch.target
            )
            for _ in range(5)
        ]
    )
    assert torch.all(worst_case > noise_losses.amax(0))


# -- gradients --------------------------------------------------------------------------------


def test_attack_gradient_matches_finite_differences():
    model = _model().double()
    batch = _batch(dtype=torch.complex128)
    delta = 0.01 * torch.randn(
        batch.kspace.shape, dtype=torch.complex128, generator=torch.Generator().manual_seed(1)
    )
    grad, _ = attack_gradient(model, batch, delta, batch.target)
    h = 1e-6
    for index, part in [((0, 0, 3, N // 2), 1.0), ((1, 0, 7, 0), 1j), ((0, 0, 2, 1), 1.0)]:
        bump = torch.zeros_like(delta)
        bump[index] = h * part
        plus = attack_loss(model, batch, delta + bump, batch.target).sum()
        minus = attack_loss(model, batch, delta - bump, batch.target).sum()
        expected = (plus - minus) / (2 * h)
        got = grad[index].real if part == 1.0 else grad[index].imag
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    # Column 1 is not sampled: the measurements ignore it.
    assert torch.count_nonzero(grad[..., ~_mask()]) == 0


def test_eot_gradient_of_a_deterministic_model_is_the_plain_gradient():
    model, batch = _model(), _batch()
    delta = 0.01 * torch.randn(
        batch.kspace.shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(1)
    )
    plain, plain_loss = attack_gradient(model, batch, delta, batch.target, eot_samples=1)
    eot, eot_loss = attack_gradient(model, batch, delta, batch.target, eot_samples=4)
    assert plain.abs().max() > 0
    torch.testing.assert_close(eot, plain)
    torch.testing.assert_close(eot_loss, plain_loss)


def test_eot_gradient_averages_fresh_noise_draws():
    model, batch = _model("smug"), _batch()
    delta = torch.zeros_like(batch.kspace)
    eot, _ = attack_gradient(
        model, batch, delta, batch.target, eot_samples=3, generator=torch.Generator().manual_seed(2)
    )
    gen = torch.Generator().manual_seed(2)
    draws = [attack_gradient(model, batch, delta, batch.target, generator=gen)[0] for _ in range(3)]
    torch.testing.assert_close(eot, torch.stack(draws).mean(0))
    assert not torch.allclose(draws[0], draws[1])  # the draws differ: the noise is fresh each pass


def test_smoothed_model_is_attacked_with_its_noise_active():
    model, batch = _model("smug"), _batch()
    seen = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("generator")), with_kwargs=True
    )

    def attack(seed):
        gen = torch.Generator().manual_seed(seed)
        delta = pgd_kspace_attack(
            model, batch, 0.02, "linf", steps=2, random_start=False, eot_samples=2, generator=gen
        )
        return delta, gen

    first, gen = attack(0)
    assert len(seen) == 4 and all(g is gen for g in seen)
    again, _ = attack(0)
    other, _ = attack(1)
    assert torch.equal(first, again)
    # Without a random start the smoothing noise is the only randomness: a different seed, another attack.
    assert not torch.equal(first, other)


def test_image_attack_leaves_parameter_gradients_and_modes_alone():
    model = _model().train()
    model.denoiser.body[1].eval()  # a frozen part must stay frozen
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    seen_training = []
    model.register_forward_pre_hook(lambda module, args: seen_training.append(module.training))
    pgd_image_attack(model, _batch(), 1 / 255, "linf", steps=2, generator=torch.Generator().manual_seed(0))
    assert seen_training and not any(seen_training)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert model.training and model.denoiser.training and not model.denoiser.body[1].training


# -- random perturbations and batches ----------------------------------------------------------


def test_random_perturbation_lies_on_the_ball():
    batch = _batch()
    gen = torch.Generator().manual_seed(0)
    linf = random_perturbation(batch, 0.02, "linf", generator=gen)
    torch.testing.assert_close(torch.view_as_real(linf).abs().flatten(1).amax(1), torch.full((2,), 0.02))
    assert torch.count_nonzero(linf[..., ~_mask()]) == 0
    l2 = random_perturbation(batch, 0.3, "l2", generator=gen)
    torch.testing.assert_close(_sampled_norm(l2), torch.full((2,), 0.3))
    relative = random_perturbation(batch, 0.1, "l2", relative=True, generator=gen)
    torch.testing.assert_close(_sampled_norm(relative), 0.1 * _sampled_norm(batch.kspace))
    image = random_perturbation(batch, 0.3, "l2", domain="image", generator=gen)
    assert image.shape == batch.target.shape and torch.count_nonzero(image) == image.numel()


def test_apply_perturbation_returns_a_new_batch():
    batch = _batch()
    kspace = batch.kspace.clone()
    delta = torch.ones_like(kspace)
    perturbed = apply_perturbation(batch, delta, "kspace")
    assert torch.equal(batch.kspace, kspace)
    torch.testing.assert_close(perturbed.kspace - kspace, delta * _mask())
    assert torch.equal(perturbed.kspace[..., ~_mask()], kspace[..., ~_mask()])
    image_delta = torch.full(batch.target.shape, 0.5 + 0.5j, dtype=torch.complex64)
    perturbed = apply_perturbation(batch, image_delta, "image")
    assert batch.zero_filled is None
    torch.testing.assert_close(perturbed.zero_filled, adjoint_operator(kspace, batch.mask) + image_delta)
    with pytest.raises(ValueError, match="delta"):
        apply_perturbation(batch, image_delta, "kspace")


# -- registry and argument checks -------------------------------------------------------------


def test_every_registered_attack_runs():
    model, batch = _model(), _batch()
    for name in ATTACKS:
        kwargs = {} if name.startswith("noise") else {"steps": 1}
        delta = run_attack(name, model, batch, 0.01, torch.Generator().manual_seed(0), **kwargs)
        domain = attack_domain(name)
        expected = batch.kspace.shape if domain == "kspace" else batch.target.shape
        assert delta.shape == expected, name
        assert torch.count_nonzero(delta) > 0, name


def test_bad_arguments_are_named():
    model, batch = _model(), _batch()
    with pytest.raises(ValueError, match="unknown attack 'pgd_magic'"):
        run_attack("pgd_magic", model, batch, 0.01)
    with pytest.raises(ValueError, match="norm"):
        run_attack("pgd_kspace_l2", model, batch, 0.01, norm="linf")
    with pytest.raises(ValueError, match="norm"):
        pgd_kspace_attack(model, batch, 0.01, norm="l1")
    with pytest.raises(ValueError, match="relative"):
        pgd_kspace_attack(model, batch, 0.01, norm="linf", relative=True)
    with pytest.raises(ValueError, match="loss_target"):
        pgd_kspace_attack(model, batch, 0.01, loss_target="label")
    with pytest.raises(ValueError, match="eps"):
        random_perturbation(batch, -1.0)
    no_target = dataclasses.replace(batch, target=None)
    with pytest.raises(ValueError, match="'target'"):
        pgd_kspace_attack(model, no_target, 0.01, steps=1)


def test_deterministic_models_are_attacked_with_one_pass_per_step():
    """EOT averages noise draws; a model without noise would repeat identical passes for nothing."""
    model, batch = _model(), _batch()
    assert not is_randomised(model) and is_randomised(_model("smug")) and is_randomised(RSE2E(model))
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    pgd_kspace_attack(
        model, batch, 0.02, "linf", steps=3, random_start=False, eot_samples=4, loss_target="clean"
    )
    assert len(calls) == 1 + 3  # the clean target once, then one pass per PGD step


def test_paper_protocols_fix_the_authors_settings_and_are_labelled():
    from smug.study import NOISE_COUNTERPART, PROTOCOLS
    from smug.attacks import attack_protocol

    journal, conference = PROTOCOLS["pgd_kspace_linf_journal"], PROTOCOLS["pgd_image_linf_conference"]
    assert journal["steps"] == conference["steps"] == 10
    assert journal["eot_samples"] == 1 and journal["random_start"] and journal["surrogate"] is None
    assert conference["surrogate"] == "unsmoothed"
    assert attack_domain("pgd_kspace_linf_journal") == "kspace"
    assert attack_domain("pgd_image_linf_conference") == "image"
    assert attack_protocol("pgd_kspace_linf_journal") == "journal protocol"
    assert attack_protocol("pgd_image_linf_conference") == "conference protocol"
    assert attack_protocol("pgd_kspace_linf") == "white-box (EOT)"
    assert attack_protocol("noise_kspace_linf") == "random noise"
    assert attack_protocol("acceleration") == "shift"
    assert attack_protocol("clean") == "clean"
    assert attack_protocol("generator_unet_adv") == "generator transfer"
    assert set(PROTOCOLS) <= set(NOISE_COUNTERPART)
