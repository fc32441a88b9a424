"""MoDL, SMUG, Weighted SMUG and RS-E2E: shapes, gradients, and the identities the method rests on."""

import pytest
import torch

from smug.models import build_denoiser, build_model, denoise_complex, MoDL, RSE2E, smoothed_denoise
from smug.models import UnrollTrace, WeightEncoder
from smug.mri import MRIPhysics, adjoint_operator, apply_column_mask, clamp_complex
from tests.conftest import random_complex, random_sens_maps

H, W = 16, 20


def _problem(coils, gen, batch=2):
    mask = torch.zeros(W, dtype=torch.bool)
    mask[::3] = True
    mask[W // 2 - 2 : W // 2 + 2] = True
    sens = None if coils is None else random_sens_maps(batch, coils, H, W, gen, torch.complex64)
    kspace = apply_column_mask(random_complex((batch, coils or 1, H, W), gen, torch.complex64) * 0.1, mask)
    return kspace, mask, sens


def _model_cfg(**changes):
    """An unrolled model's spec ``model`` section, tiny."""
    cfg = dict(
        denoiser="dncnn",
        denoiser_args=dict(num_chans=8, num_layers=3),
        num_unrolls=2,
        lam=0.5,
        learn_lam=True,
        cg_max_iter=5,
        cg_tol=1e-6,
    )
    return {**cfg, **changes}


def _denoiser(name="dncnn"):
    torch.manual_seed(0)
    args = {"dncnn": dict(num_chans=8, num_layers=3), "didn": dict(num_chans=8, num_dubs=1)}[name]
    return build_denoiser(name, **args).eval()


def test_smoothing_batched_equals_loop(gen):
    denoiser = _denoiser("didn")
    image = random_complex((3, H, W), gen, torch.complex64) * 0.3
    m, sigma = 5, 0.05
    noise_gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        batched, trace = smoothed_denoise(denoiser, image, sigma, m, noise_gen)
        # Recreate the same draws and denoise every sample separately.
        draws = torch.randn((2, m, 3, H, W), generator=torch.Generator().manual_seed(7))
        noise = sigma * torch.complex(draws[0], draws[1])
        loop = [denoise_complex(denoiser, clamp_complex(image + noise[j])) for j in range(m)]
    torch.testing.assert_close(batched, torch.stack(loop).mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(trace.noisy_outputs, torch.stack(loop), rtol=1e-5, atol=1e-6)


def test_weighted_smoothing_with_equal_weights_is_plain_smoothing(gen):
    class ConstantWeights(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0],), 0.3)

    denoiser = _denoiser()
    image = random_complex((2, H, W), gen, torch.complex64) * 0.3
    with torch.no_grad():
        plain, _ = smoothed_denoise(denoiser, image, 0.02, 4, torch.Generator().manual_seed(1))
        weighted, trace = smoothed_denoise(
            denoiser, image, 0.02, 4, torch.Generator().manual_seed(1), weight_encoder=ConstantWeights()
        )
    torch.testing.assert_close(weighted, plain)
    assert trace.weights.shape == (4, 2)


def test_fixed_generator_makes_smug_repeatable_and_fresh_noise_per_unroll(gen):
    kspace, mask, sens = _problem(3, gen)
    model = MoDL(_denoiser(), num_unrolls=3, smoothing="smug", num_samples=3, sigma=0.05).eval()
    with torch.no_grad():
        a = model(kspace, MRIPhysics(mask, sens), generator=torch.Generator().manual_seed(3))
        b = model(kspace, MRIPhysics(mask, sens), generator=torch.Generator().manual_seed(3))
        c = model(kspace, MRIPhysics(mask, sens), generator=torch.Generator().manual_seed(4))
        trace = UnrollTrace()
        model(kspace, MRIPhysics(mask, sens), generator=torch.Generator().manual_seed(3), trace=trace)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    noise_0 = trace.smoothing[0].noisy_outputs - trace.smoothing[0].noisy_outputs.mean(0)
    noise_1 = trace.smoothing[1].noisy_outputs - trace.smoothing[1].noisy_outputs.mean(0)
    assert not torch.allclose(noise_0, noise_1)


@pytest.mark.parametrize("coils", [None, 3])
def test_zero_unrolls_return_the_zero_filled_image(coils, gen):
    kspace, mask, sens = _problem(coils, gen)
    model = MoDL(_denoiser(), num_unrolls=4)
    torch.testing.assert_close(
        model(kspace, MRIPhysics(mask, sens), num_unrolls=0), adjoint_operator(kspace, mask, sens)
    )


@pytest.mark.parametrize("coils", [None, 3])
@pytest.mark.parametrize("kind", ["modl", "smug", "weighted_smug", "rs_e2e"])
def test_every_model_reconstructs_and_backpropagates(kind, coils, gen):
    kspace, mask, sens = _problem(coils, gen)
    model_cfg = _model_cfg()
    smoothing_cfg = dict(sigma=0.01, num_samples=3, kspace_sigma=0.01, weight_encoder=dict(num_chans=4))
    model = build_model(kind, model_cfg, smoothing_cfg)
    out = model(kspace, MRIPhysics(mask, sens), generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, H, W) and out.dtype == torch.complex64
    out.abs().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing}"


def test_unrolls_are_a_runtime_argument(gen):
    kspace, mask, sens = _problem(3, gen)
    model = MoDL(_denoiser(), num_unrolls=8).eval()
    with torch.no_grad():
        outs = [model(kspace, MRIPhysics(mask, sens), num_unrolls=n) for n in (1, 8, 16)]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])
    torch.testing.assert_close(outs[1], model(kspace, MRIPhysics(mask, sens)))


def test_rs_e2e_with_zero_noise_is_the_network(gen):
    kspace, mask, sens = _problem(3, gen)
    modl = MoDL(_denoiser(), num_unrolls=2).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            RSE2E(modl, sigma=0.0, num_samples=3)(kspace, MRIPhysics(mask, sens)),
            modl(kspace, MRIPhysics(mask, sens)),
        )


def test_weighted_smug_needs_an_encoder():
    with pytest.raises(ValueError, match="weight_encoder"):
        MoDL(_denoiser(), smoothing="weighted")
    with pytest.raises(ValueError, match="unknown smoothing"):
        MoDL(_denoiser(), smoothing="median")
    assert isinstance(
        build_model(
            "weighted_smug",
            dict(
                denoiser="dncnn",
                denoiser_args={},
                num_unrolls=1,
                lam=1.0,
                learn_lam=False,
                cg_max_iter=3,
                cg_tol=1e-6,
            ),
            dict(sigma=0.01, num_samples=2),
        ).weight_encoder,
        WeightEncoder,
    )


def test_learned_lam_stays_above_its_floor_and_cg_still_converges(gen):
    """A loss that rewards a smaller lam drives the unconstrained MoDL weight negative (what the
    default run did before); the softplus parametrisation keeps it above the floor, so the DC system
    stays positive definite and CG still reaches its tolerance."""
    from smug.mri import conjugate_gradient
    from smug.mri import normal_operator_fn

    kspace, mask, sens = _problem(3, gen)
    floor = 0.01
    model = MoDL(_denoiser(), num_unrolls=2, lam=0.05, learn_lam=True, lam_floor=floor, cg_max_iter=30)
    optimiser = torch.optim.Adam([model.lam_offset], lr=0.5)
    for _ in range(60):
        optimiser.zero_grad()
        loss = model.lam  # a loss minimised by lam -> -infinity
        loss.backward()
        optimiser.step()
    lam = float(model.lam.detach())
    assert floor <= lam < floor * 1.01, lam
    assert float(model.lam_offset) < -5  # the free parameter went far below zero

    normal = normal_operator_fn(mask, sens, W)
    rhs = adjoint_operator(kspace, mask, sens)
    x, iterations = conjugate_gradient(
        lambda v: normal(v) + model.lam.detach() * v, rhs, torch.zeros_like(rhs), max_iter=200, tol=1e-5
    )
    residual = (normal(x) + lam * x - rhs).flatten(1).norm(dim=1) / rhs.flatten(1).norm(dim=1)
    assert (residual < 1e-5).all() and (iterations < 200).all(), (residual, iterations)
    with torch.no_grad():
        assert torch.isfinite(model(kspace, MRIPhysics(mask, sens))).all()


def test_lam_must_be_positive_and_above_a_learned_floor():
    with pytest.raises(ValueError, match="lam > 0"):
        MoDL(_denoiser(), lam=0.0)
    with pytest.raises(ValueError, match="lam > 0"):
        MoDL(_denoiser(), lam=-0.1)
    with pytest.raises(ValueError, match="lam_floor"):
        MoDL(_denoiser(), lam=0.01, learn_lam=True, lam_floor=0.01)


def test_learned_and_fixed_lam_start_at_the_configured_value():
    learned = MoDL(_denoiser(), lam=0.05, learn_lam=True, lam_floor=0.01)
    fixed = MoDL(_denoiser(), lam=1.0, learn_lam=False)
    assert float(learned.lam) == pytest.approx(0.05, rel=1e-6)
    assert float(fixed.lam) == 1.0
    assert [n for n, _ in learned.named_parameters() if "lam" in n] == ["lam_offset"]
    assert not [n for n, _ in fixed.named_parameters() if "lam" in n]


def test_without_smoothing_gives_the_network_that_is_smoothed(gen):
    from smug.models import without_smoothing

    kspace, mask, sens = _problem(3, gen)
    model_cfg = _model_cfg()
    smoothing_cfg = dict(sigma=0.05, num_samples=3, kspace_sigma=0.05, weight_encoder=dict(num_chans=4))
    smug = build_model("smug", model_cfg, smoothing_cfg).eval()
    plain = without_smoothing(smug)
    assert plain.randomised is False and smug.randomised is True and smug.smoothing == "smug"
    modl = build_model("modl", model_cfg, smoothing_cfg).eval()
    modl.load_state_dict(plain.state_dict())
    with torch.no_grad():
        first = plain(kspace, MRIPhysics(mask, sens), generator=torch.Generator().manual_seed(1))
        second = plain(kspace, MRIPhysics(mask, sens), generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(first, second)  # no noise left
        torch.testing.assert_close(first, modl(kspace, MRIPhysics(mask, sens)))
    assert plain.denoiser is smug.denoiser  # weights shared, not copied
    rs = build_model("rs_e2e", model_cfg, smoothing_cfg)
    assert without_smoothing(rs) is rs.modl
    assert without_smoothing(modl) is modl


def test_a_bounded_denoiser_never_outputs_beyond_its_bound(gen):
    """The bounded-output variant: whatever the input's size, every denoised value stays in [-b, b]."""

    class Amplifier(torch.nn.Module):
        def forward(self, x):
            return 50.0 * x

    kspace, mask, sens = _problem(3, gen)
    bound = 0.7
    model = MoDL(Amplifier(), num_unrolls=2, smoothing="smug", num_samples=2, output_bound=bound).eval()
    trace = UnrollTrace()
    with torch.no_grad():
        model(kspace * 100, MRIPhysics(mask, sens), generator=torch.Generator().manual_seed(0), trace=trace)
    outputs = torch.cat([torch.view_as_real(step.noisy_outputs).flatten() for step in trace.smoothing])
    assert outputs.abs().max() <= bound and outputs.abs().max() == pytest.approx(bound)
    unbounded = MoDL(Amplifier(), num_unrolls=2, smoothing="smug", num_samples=2).eval()
    trace = UnrollTrace()
    with torch.no_grad():
        unbounded(
            kspace * 100, MRIPhysics(mask, sens), generator=torch.Generator().manual_seed(0), trace=trace
        )
    assert torch.view_as_real(trace.smoothing[0].noisy_outputs).abs().max() > 10 * bound
    with pytest.raises(ValueError, match="output_bound"):
        MoDL(Amplifier(), output_bound=0.0)


class _MeanScorer(torch.nn.Module):
    """Scores an image by its mean real part, so which image it saw is visible in the weights."""

    def logits(self, x):
        return 10 * x[:, 0].mean((1, 2))

    def forward(self, x):
        return torch.sigmoid(self.logits(x))


@pytest.mark.parametrize("scores", ["denoised", "noisy"])
def test_weighted_smoothing_scores_the_chosen_images(scores, gen):
    """The encoder sees the denoised copies or the noisy inputs, as `weight_scores` says."""

    class Shift(torch.nn.Module):  # a "denoiser" that moves every value: its outputs differ from its inputs
        def forward(self, x):
            return x + 0.5

    image = random_complex((2, H, W), gen, torch.complex64) * 0.3
    with torch.no_grad():
        _, trace = smoothed_denoise(
            Shift(), image, 0.05, 3, torch.Generator().manual_seed(2), _MeanScorer(), weight_scores=scores
        )
    draws = torch.randn((2, 3, 2, H, W), generator=torch.Generator().manual_seed(2))
    noisy_real = (image.real.unsqueeze(0) + 0.05 * draws[0]).clamp(-1, 1)
    seen = noisy_real + 0.5 if scores == "denoised" else noisy_real
    expected = torch.sigmoid(10 * seen.mean((2, 3)))
    torch.testing.assert_close(trace.weights, expected / expected.sum(0), rtol=1e-5, atol=1e-6)


def test_softmax_weighting_normalises_the_logits_over_the_draws(gen):
    image = random_complex((2, H, W), gen, torch.complex64) * 0.3
    denoiser = _denoiser()
    with torch.no_grad():
        out, trace = smoothed_denoise(
            denoiser,
            image,
            0.05,
            4,
            torch.Generator().manual_seed(3),
            _MeanScorer(),
            weight_normalisation="softmax",
        )
    logits = _MeanScorer().logits(
        torch.view_as_real(trace.noisy_outputs).permute(0, 1, 4, 2, 3).flatten(0, 1)
    )
    torch.testing.assert_close(trace.weights, torch.softmax(logits.reshape(4, 2), 0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(trace.weights.sum(0), torch.ones(2))
    torch.testing.assert_close(out, (trace.weights[..., None, None] * trace.noisy_outputs).sum(0))
    with pytest.raises(ValueError, match="weight_normalisation"):
        smoothed_denoise(denoiser, image, 0.05, 2, None, _MeanScorer(), weight_normalisation="max")


def test_weighted_smug_options_reach_the_model_from_its_spec():
    model_cfg = _model_cfg(lam_floor=0.01, output_bound=1.0)
    smoothing = dict(
        sigma=0.01,
        num_samples=2,
        weight_encoder=dict(num_chans=4, num_blocks=1),
        weight_scores="noisy",
        weight_normalisation="softmax",
    )
    model = build_model("weighted_smug", model_cfg, smoothing)
    assert (model.weight_scores, model.weight_normalisation, model.output_bound) == ("noisy", "softmax", 1.0)
    assert build_model("modl", {**model_cfg, "output_bound": None}).output_bound is None
