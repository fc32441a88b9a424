"""Analytic receive-coil sensitivity maps for the synthetic multicoil data (numpy only)."""

from __future__ import annotations

import numpy as np


def birdcage_sensitivities(
    num_coils: int,
    shape: tuple[int, int],
    rng: np.random.Generator | None = None,
    *,
    coil_radius: float = 1.5,
    falloff: float = 1.0,
    phase_twist: float = 0.6,
) -> np.ndarray:
    """Sensitivity maps of ``num_coils`` loops on a circle around the object.

    Coil ``c`` sits at angle ``2 pi c / num_coils`` (plus a random rotation and radius jitter when
    ``rng`` is given) at ``coil_radius`` from the centre, in units of half the shorter side of the
    grid. Its magnitude falls off as ``1 / (1 + (d / falloff)^2)`` with the distance ``d`` to the
    coil, and its phase is the coil angle plus a linear ramp along the coil's tangent.

    The maps are normalised so that ``sum_c |S_c|^2 = 1`` at every pixel. Then the SENSE combination
    ``sum_c conj(S_c) (S_c x)`` of noise-free coil images returns ``x`` exactly, so the sensitivity
    maps stored next to the synthetic k-space are the true maps of that data and the magnitude of
    the image equals the root-sum-of-squares of its coil images.

    Args:
        num_coils: number of coils, at least 1.
        shape: ``(H, W)`` of the grid.
        rng: optional generator for the random rotation and radius jitter; ``None`` gives the
            symmetric arrangement.
        coil_radius: distance of the coils from the centre.
        falloff: distance at which a coil's magnitude has dropped by half.
        phase_twist: slope of the phase ramp in radians per unit.

    Returns:
        complex64 ``(num_coils, H, W)``.
    """
    if int(num_coils) != num_coils or num_coils < 1:
        raise ValueError(f"num_coils must be a positive integer, got {num_coils!r}")
    height, width = int(shape[0]), int(shape[1])
    if height < 1 or width < 1:
        raise ValueError(f"shape must be positive, got {tuple(shape)}")
    num_coils = int(num_coils)

    rotation = 0.0 if rng is None else rng.uniform(0.0, 2 * np.pi / num_coils)
    radius = np.full(num_coils, coil_radius)
    if rng is not None:
        radius = radius * rng.uniform(0.9, 1.1, num_coils)
    angles = rotation + 2 * np.pi * np.arange(num_coils) / num_coils

    half = min(height, width) / 2.0
    v = ((np.arange(height) - (height - 1) / 2.0) / half)[None, :, None]
    u = ((np.arange(width) - (width - 1) / 2.0) / half)[None, None, :]
    coil_u = (radius * np.cos(angles))[:, None, None]
    coil_v = (radius * np.sin(angles))[:, None, None]
    distance_sq = (u - coil_u) ** 2 + (v - coil_v) ** 2
    magnitude = 1.0 / (1.0 + distance_sq / falloff**2)
    along_tangent = (
        -(u - coil_u) * np.sin(angles)[:, None, None] + (v - coil_v) * np.cos(angles)[:, None, None]
    )
    maps = magnitude * np.exp(1j * (angles[:, None, None] + phase_twist * along_tangent))
    return normalize_sensitivities(maps).astype(np.complex64)


def normalize_sensitivities(maps: np.ndarray) -> np.ndarray:
    """Scale maps ``(..., C, H, W)`` so that ``sum_c |S_c|^2 = 1`` at every pixel where any coil sees
    signal; pixels where all coils are exactly zero stay zero."""
    energy = np.sqrt((np.abs(maps) ** 2).sum(axis=-3, keepdims=True))
    return np.divide(maps, energy, out=np.zeros_like(maps), where=energy > 0)
