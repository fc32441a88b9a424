"""Random perturbations of the same norm balls as the PGD attacks: the average case beside the
worst, drawn once per slice and level and shared by every model.
"""

from __future__ import annotations


import torch

from smug.data import Batch
from smug.attacks.perturbations import (
    DOMAINS,
    _TINY,
    _check_ball,
    _check_choice,
    _gaussian,
    _per_sample,
    _per_sample_norm,
    _support,
    ball_radius,
    perturbation_shape,
)


def random_perturbation(
    batch: Batch,
    eps: float,
    norm: str = "linf",
    domain: str = "kspace",
    relative: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gaussian noise scaled onto the surface of the attack's ball, to compare worst and average case.

    Args:
        batch: clean batch.
        eps: as in :func:`pgd_kspace_attack`.
        norm: "linf" (each sample scaled so ``max(|Re|, |Im|) = eps``) or "l2" (norm exactly the radius).
        domain: "kspace" (zero off the mask) or "image".
        relative: l2 radius ``eps * ||y||`` (``eps * ||A^H y||`` in the image domain).
        generator: noise source.

    Returns:
        complex ``(B, C, H, W)`` (kspace) or ``(B, H, W)`` (image).
    """
    _check_choice(domain, DOMAINS, "domain")
    _check_ball(eps, norm, relative)
    radius = ball_radius(batch, eps, domain, relative)
    noise = _gaussian(perturbation_shape(batch, domain), batch.kspace, generator)
    support = _support(batch, domain)
    if support is not None:
        noise = noise * support
    if norm == "linf":
        size = torch.view_as_real(noise).abs().flatten(1).amax(1)
    else:
        size = _per_sample_norm(noise)
    return noise * _per_sample(radius / size.clamp_min(_TINY), noise.ndim)
