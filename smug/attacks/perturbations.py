"""The geometry of the perturbations every attack shares: where a perturbation enters a batch, the
norm balls, the projection onto them and the random start.

Two threat models, as in the studies:

- **k-space**: ``y -> y + M delta`` with ``delta`` complex ``(B, C, H, W)``, non-zero only on sampled
  columns (the SMUG journal code; Darestani et al. with ``relative=True``).
- **image**: ``A^H y -> A^H y + delta`` with ``delta`` complex ``(B, H, W)``, handed to the model
  through the physics it is reconstructed with (``physics.zero_filled``; the SMUG conference code).

Norm balls: ``linf`` bounds the real and imaginary parts separately (``|Re|, |Im| <= eps``, the
2-channel view the SMUG code attacks); ``l2`` bounds each sample's Euclidean norm by ``eps``, or by
``eps * ||y||`` (``eps * ||A^H y||`` in the image domain) when ``relative=True``.

The attacks themselves: :mod:`smug.attacks.pgd` (white-box, with expectation over the noise of
randomised models) and :mod:`smug.attacks.noise`, run by name through :mod:`smug.attacks.registry`.
Every random draw comes from a ``generator`` argument, so an attack is reproducible from its seed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

import torch
from torch import nn

from smug.data import Batch
from smug.mri import apply_column_mask, broadcast_mask, clamp_complex
from smug.models.reconstruct import reconstruct

NORMS = ("linf", "l2")
DOMAINS = ("kspace", "image")

# Guards the divisions by a norm: a zero gradient or a zero perturbation stays zero instead of NaN.
_TINY = 1e-30


# ----------------------------------------------------------------------------------------------
# Perturbing a batch
# ----------------------------------------------------------------------------------------------


def apply_perturbation(batch: Batch, delta: torch.Tensor, domain: str) -> Batch:
    """A new batch with the measurements perturbed; ``batch`` itself is left unchanged.

    Args:
        batch: the slices; an already perturbed ``A^H y`` in its ``zero_filled`` is perturbed further.
        delta: complex ``(B, C, H, W)`` for ``domain="kspace"``, ``(B, H, W)`` for ``"image"``.
        domain: "kspace" (``kspace + M delta``) or "image" (adds ``zero_filled = A^H y + delta``).

    Returns:
        the perturbed batch (other entries shared with ``batch``).
    """
    _check_choice(domain, DOMAINS, "domain")
    shape = perturbation_shape(batch, domain)
    if tuple(delta.shape) != shape:
        raise ValueError(
            f"delta has shape {tuple(delta.shape)}, but the {domain} domain of this batch is {shape}"
        )
    if domain == "kspace":
        return replace(batch, kspace=batch.kspace + apply_column_mask(delta, batch.mask))
    return replace(batch, zero_filled=zero_filled_image(batch) + delta)


def reconstruct_perturbed(
    model: nn.Module,
    batch: Batch,
    delta: torch.Tensor | None,
    domain: str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Reconstruct ``batch`` with ``delta`` applied (None: the clean batch); complex ``(B, H, W)``.

    Gradient mode and the model's train/eval mode are the caller's (evaluation wraps this in
    ``torch.no_grad()``).
    """
    perturbed = batch if delta is None else apply_perturbation(batch, delta, domain)
    return reconstruct(model, perturbed, generator)


def perturbation_shape(batch: Batch, domain: str) -> tuple[int, ...]:
    """Shape of a perturbation of ``batch``: ``(B, C, H, W)`` in k-space, ``(B, H, W)`` in the image."""
    _check_choice(domain, DOMAINS, "domain")
    kspace = batch.kspace
    if kspace.ndim != 4 or not torch.is_complex(kspace):
        raise ValueError(
            f"batch.kspace must be complex (B, C, H, W), got {kspace.dtype} {tuple(kspace.shape)}"
        )
    b, _, h, w = kspace.shape
    return tuple(kspace.shape) if domain == "kspace" else (b, h, w)


def zero_filled_image(batch: Batch) -> torch.Tensor:
    """``A^H y`` of a batch, complex ``(B, H, W)``: its ``zero_filled`` if it has one."""
    return batch.physics.zero_filled_image(batch.kspace)


# ----------------------------------------------------------------------------------------------
# Norm balls
# ----------------------------------------------------------------------------------------------


def ball_radius(batch: Batch, eps: float, domain: str, relative: bool) -> torch.Tensor:
    """Per-sample radius ``(B,)``: ``eps``, or ``eps * ||y||`` (``eps * ||A^H y||`` in the image domain)."""
    reference = _reference_signal(batch, domain)
    if not relative:
        return torch.full(
            (reference.shape[0],), float(eps), dtype=reference.real.dtype, device=reference.device
        )
    return eps * _per_sample_norm(reference)


def project(
    delta: torch.Tensor, radius: torch.Tensor, norm: str, support: torch.Tensor | None
) -> torch.Tensor:
    """Project ``delta`` onto the ball and its support.

    Args:
        delta: complex ``(B, ...)``.
        radius: ``(B,)``; for linf every entry must be equal (one eps for the batch).
        norm: "linf" (clamp Re and Im to ``[-eps, eps]``) or "l2" (rescale samples outside the ball).
        support: real 0/1 tensor broadcasting against ``delta`` (the k-space mask), or None.

    Returns:
        complex like ``delta``.
    """
    if support is not None:
        delta = delta * support
    if norm == "linf":
        return clamp_complex(delta, -float(radius[0]), float(radius[0]))
    scale = torch.clamp(radius / _per_sample_norm(delta).clamp_min(_TINY), max=1.0)
    return delta * _per_sample(scale, delta.ndim)


# ----------------------------------------------------------------------------------------------
# Randomised models
# ----------------------------------------------------------------------------------------------


def is_randomised(model: nn.Module) -> bool:
    """Whether a reconstruction model draws random noise in its forward pass (SMUG, Weighted SMUG,
    RS-E2E); models declare it with a ``randomised`` attribute, absent means deterministic."""
    return bool(getattr(model, "randomised", False))


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _support(batch: Batch, domain: str) -> torch.Tensor | None:
    """Where a perturbation may be non-zero: the sampled columns (k-space) or everywhere (image)."""
    if domain == "image":
        return None
    return broadcast_mask(batch.mask, 4).to(batch.kspace.real.dtype)


def _reference_signal(batch: Batch, domain: str) -> torch.Tensor:
    """The signal a relative radius is measured against: ``y`` (sampled entries) or ``A^H y``."""
    if domain == "kspace":
        return apply_column_mask(batch.kspace, batch.mask)
    return zero_filled_image(batch)


def _per_sample_norm(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x.flatten(1), dim=1)


def _per_sample(values: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.reshape((-1,) + (1,) * (ndim - 1))


def _draw(
    sampler: Callable[..., torch.Tensor], shape: tuple[int, ...], like: torch.Tensor, generator
) -> torch.Tensor:
    """Sample on the generator's device (torch requires it), then move beside ``like``."""
    device = generator.device if generator is not None else like.device
    return sampler(shape, generator=generator, device=device, dtype=like.real.dtype).to(like.device)


def _gaussian(shape: tuple[int, ...], like: torch.Tensor, generator) -> torch.Tensor:
    parts = _draw(torch.randn, (2, *shape), like, generator)
    return torch.complex(parts[0], parts[1])


def _check_choice(value: str, valid: tuple[str, ...], argument: str) -> None:
    if value not in valid:
        raise ValueError(f"unknown {argument} {value!r}; valid: {', '.join(valid)}")


def _check_ball(eps: float, norm: str, relative: bool) -> None:
    _check_choice(norm, NORMS, "norm")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be finite and non-negative, got {eps}")
    if relative and norm != "l2":
        raise ValueError(f"relative=True scales an l2 radius; it is undefined for norm={norm!r}")


def _random_point(
    batch: Batch, radius: torch.Tensor, norm: str, domain: str, generator: torch.Generator | None
) -> torch.Tensor:
    """PGD's random start: uniform in the linf box, or a random direction at a uniform fraction of
    the l2 radius; zero off the support."""
    like = batch.kspace
    shape = perturbation_shape(batch, domain)
    support = _support(batch, domain)
    if norm == "linf":
        parts = 2 * _draw(torch.rand, (2, *shape), like, generator) - 1
        delta = torch.complex(parts[0], parts[1]) * float(radius[0])
        return delta if support is None else delta * support
    direction = _gaussian(shape, like, generator)
    if support is not None:
        direction = direction * support
    fraction = _draw(torch.rand, (shape[0],), like, generator)
    scale = radius * fraction / _per_sample_norm(direction).clamp_min(_TINY)
    return direction * _per_sample(scale, direction.ndim)
