"""Randomized smoothing of a denoiser, the operation SMUG applies at every unroll.

``smoothed_denoise`` draws M Gaussian perturbations of the input, clamps them as the SMUG code
clamps its 2-channel images, denoises all M copies in ONE forward pass (samples folded into the
batch dimension) and averages, optionally with Weighted SMUG's learned per-sample weights.

Weighted SMUG's weights (:data:`WEIGHT_SCORES`, :data:`WEIGHT_NORMALISATIONS`): the encoder scores
either the denoised copies ``D(x + eta_j)`` (this project's default) or the noisy inputs
``x + eta_j`` (the journal code), and the scores are normalised either by their sum
(``sum_j w_j D_j / sum_j w_j`` with sigmoid scores, both codes) or by a softmax over the M samples
of the encoder's logits (an ablation).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from smug.mri import channels_to_complex, complex_to_channels

WEIGHT_SCORES = ("denoised", "noisy")
WEIGHT_NORMALISATIONS = ("sum", "softmax")


def denoise_complex(denoiser: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor) -> torch.Tensor:
    """Run a 2-channel denoiser on a complex image ``(B, H, W)``; returns complex ``(B, H, W)``."""
    return channels_to_complex(denoiser(complex_to_channels(image)))


def complex_gaussian(
    shape: tuple[int, ...], sigma: float, like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Complex noise whose real and imaginary parts are each N(0, sigma^2), as the SMUG code adds
    ``sigma * randn`` to both channels."""
    real = torch.randn((2, *shape), generator=generator, device=like.device, dtype=like.real.dtype)
    return sigma * torch.complex(real[0], real[1])


@dataclass
class SmoothingTrace:
    """What one smoothed denoising step computed, for the unrolled stability loss.

    Attributes:
        noisy_outputs: ``D(clamp(x + eta_j))`` for every sample, complex ``(M, B, H, W)``.
        weights: Weighted SMUG's ``(M, B)`` sample weights, normalised to sum to 1 over the M
            samples, or None for plain averaging.
    """

    noisy_outputs: torch.Tensor
    weights: torch.Tensor | None


def smoothed_denoise(
    denoiser: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    sigma: float,
    num_samples: int,
    generator: torch.Generator | None = None,
    weight_encoder: nn.Module | None = None,
    clamp: bool = True,
    weight_scores: str = "denoised",
    weight_normalisation: str = "sum",
    sample_chunk: int | None = None,
) -> tuple[torch.Tensor, SmoothingTrace]:
    """Randomized smoothing ``E_eta[D(x + eta)]`` estimated with ``num_samples`` draws.

    Args:
        denoiser: 2-channel network ``(N, 2, H, W) -> (N, 2, H, W)``.
        image: complex ``(B, H, W)``, normalised so the object's magnitude is at most 1.
        sigma: standard deviation of the real and of the imaginary noise.
        num_samples: M, the number of noise draws.
        generator: source of the noise (a seeded generator makes evaluation repeatable).
        weight_encoder: Weighted SMUG's scorer ``(N, 2, H, W) -> (N,)`` (a
            :class:`smug.models.weight_encoder.WeightEncoder`); None averages uniformly.
        clamp: clamp real and imaginary parts of the noisy copies to [-1, 1] (the SMUG code does).
        weight_scores: what the encoder scores: the ``denoised`` copies or the ``noisy`` inputs.
        weight_normalisation: ``sum`` (sigmoid weights over their sum) or ``softmax`` (of the logits
            over the M samples).
        sample_chunk: denoise the M copies this many at a time (None: all in one pass;
            :func:`denoise_in_chunks`), so activation memory no longer grows with M; the draws are
            made once, before any chunk, so the result and its gradients are those of one pass.
            Under autograd nothing of the chunks is kept until the backward pass recomputes them,
            and Weighted SMUG's encoder is recomputed there too (:func:`checkpoint_counted_once`):
            the smoothing then keeps no activations at all between the forward and backward passes.

    Returns:
        ``(smoothed, trace)``: the complex ``(B, H, W)`` estimate and the per-sample outputs.
    """
    check_weighting(weight_scores, weight_normalisation)
    b, h, w = image.shape
    # Noise is added and clamped in the denoiser's (real, imaginary) channel layout, which it needs
    # anyway: one real tensor op each instead of building complex copies. The draws are those of
    # complex_gaussian((M, B, H, W)) (real parts first, then imaginary parts), reordered.
    draws = torch.randn(
        (2, num_samples, b, h, w), generator=generator, device=image.device, dtype=image.real.dtype
    )
    noisy = complex_to_channels(image).unsqueeze(0) + sigma * draws.permute(1, 2, 0, 3, 4)
    if clamp:
        noisy = noisy.clamp(-1.0, 1.0)
    noisy = noisy.reshape(num_samples * b, 2, h, w)
    chunked = sample_chunk is not None and sample_chunk < num_samples
    denoised = denoise_in_chunks(denoiser, noisy, sample_chunk * b) if chunked else denoiser(noisy)
    outputs = channels_to_complex(denoised).reshape(num_samples, b, h, w)
    if weight_encoder is None:
        return outputs.mean(0), SmoothingTrace(outputs, None)
    scored = denoised if weight_scores == "denoised" else noisy
    score = weight_encoder if weight_normalisation == "sum" else weight_encoder.logits
    if chunked and torch.is_grad_enabled():
        # The encoder scores every draw at once (its batch statistics are over all M), but its
        # activations on M images would be kept for every unroll: recompute them instead.
        raw = checkpoint_counted_once(score, weight_encoder, scored).reshape(num_samples, b)
    else:
        raw = score(scored).reshape(num_samples, b)
    if weight_normalisation == "sum":
        total = raw.sum(0)
        weighted = (raw[..., None, None] * outputs).sum(0) / total[..., None, None]
        return weighted, SmoothingTrace(outputs, raw / total)
    weights = torch.softmax(raw, dim=0)
    return (weights[..., None, None] * outputs).sum(0), SmoothingTrace(outputs, weights)


def batch_norms(module: nn.Module) -> list[nn.Module]:
    """The batch normalisations in ``module`` (their statistics depend on the whole batch)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def denoise_in_chunks(
    denoiser: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, size: int
) -> torch.Tensor:
    """``denoiser`` over 2-channel ``images (N, 2, H, W)`` in slices of ``size`` along ``N``,
    concatenated. Under autograd each slice is checkpointed: its activations are recomputed in the
    backward pass rather than kept, so memory holds one slice's. The denoiser draws no random
    numbers, so the recomputation is exact; a denoiser with batch normalisation in training mode is
    refused (its statistics, and its running averages, would be per slice and counted twice).

    Raises:
        ValueError: ``size`` below 1, or batch normalisation in training mode.
    """
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    if isinstance(denoiser, nn.Module):
        refuse_chunked_batch_statistics(denoiser, type(denoiser).__name__)
    parts = []
    for chunk in images.split(size):
        parts.append(
            checkpoint(denoiser, chunk, use_reentrant=False) if torch.is_grad_enabled() else denoiser(chunk)
        )
    return torch.cat(parts)


def checkpoint_counted_once(function: Callable, module: nn.Module, *tensors: torch.Tensor):
    """``function(*tensors)`` checkpointed (its activations recomputed in the backward pass instead
    of kept), where ``function`` runs ``module``: the recomputation normalises by the same batch
    statistics but leaves the running averages of ``module``'s batch normalisations as the first
    call left them, so they count each batch once."""
    calls = []

    def run(*inputs: torch.Tensor):
        recomputing = bool(calls)
        calls.append(1)
        with running_stats_frozen(module) if recomputing else contextlib.nullcontext():
            return function(*inputs)

    return checkpoint(run, *tensors, use_reentrant=False)


@contextlib.contextmanager
def running_stats_frozen(module: nn.Module):
    """Batch normalisations in ``module`` keep their running averages and counters unchanged."""
    norms = batch_norms(module)
    saved = [
        (m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms
    ]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def check_weighting(weight_scores: str, weight_normalisation: str) -> None:
    """Refuse an unknown Weighted SMUG ``weight_scores`` or ``weight_normalisation``, naming it."""
    if weight_scores not in WEIGHT_SCORES:
        raise ValueError(f"unknown weight_scores {weight_scores!r}; valid: {', '.join(WEIGHT_SCORES)}")
    if weight_normalisation not in WEIGHT_NORMALISATIONS:
        raise ValueError(
            f"unknown weight_normalisation {weight_normalisation!r}; valid: {', '.join(WEIGHT_NORMALISATIONS)}"
        )


def refuse_chunked_batch_statistics(module: nn.Module, what: str, exclude: nn.Module | None = None) -> None:
    """Refuse passing ``module`` in training a chunk at a time (``memory.sample_chunk``) where it
    normalises by batch statistics, which would then be per chunk (and its running averages counted
    once per chunk); the batch normalisations inside ``exclude`` see the whole batch and are allowed.
    ``what`` names the network in the message."""
    if not module.training:
        return
    allowed = set(exclude.modules()) if exclude is not None else set()
    if any(norm not in allowed for norm in batch_norms(module)):
        raise ValueError(
            f"memory.sample_chunk: {what} uses batch normalisation, whose training statistics would be "
            "per chunk; train it with sample_chunk: null"
        )
