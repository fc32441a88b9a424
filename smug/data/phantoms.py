"""Random 2-D anatomical phantoms (knee-like and brain-like) for the embedded synthetic dataset.

Each anatomy family is a pair of functions: ``sample_*_params(rng)`` draws the random parameters of
one *volume* once, and ``*_phantom(params, shape, z)`` renders one slice of that volume at slice
position ``z`` in [-1, 1]. Every structure is a continuous function of ``(u, v, z)``, so the slices
of a volume change smoothly, and rendering the same parameters at another matrix size shows the
same object.

Coordinates: ``u`` runs along columns and ``v`` along rows (downwards), both in units of half the
shorter side of the slice (or of its central ``frame``), so a square slice spans [-1, 1] in both and
shapes stay round whatever the aspect ratio. Textures are sums of random plane waves (band-limited noise that is defined
everywhere, also between slices); components above half the Nyquist frequency of the requested grid
are dropped so small renderings do not alias.

numpy only: the synthetic-data job must not pay for importing torch.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

PhantomParams = dict[str, Any]

# Width of the smooth step at object boundaries, in pixels: soft enough to avoid staircase
# aliasing, sharp enough to keep the edges that reconstructions are judged on.
_EDGE_PIXELS = 0.7


def sample_knee_params(rng: np.random.Generator) -> PhantomParams:
    """Draw the random parameters of one knee-like volume (coronal proton-density look)."""
    return {
        "leg_half_width": rng.uniform(0.72, 0.84),
        "knee_bulge": rng.uniform(0.04, 0.1),
        "tilt": rng.uniform(-0.06, 0.06),
        "joint_v": rng.uniform(-0.08, 0.08),
        "joint_shift_z": rng.uniform(-0.06, 0.06),
        "size_falloff_z": rng.uniform(0.15, 0.3),
        "fat_thickness": rng.uniform(0.05, 0.09),
        "condyle_u": rng.uniform(0.24, 0.31),
        "condyle_a": rng.uniform(0.19, 0.25),
        "condyle_b": rng.uniform(0.15, 0.21),
        "condyle_asym": rng.uniform(-0.03, 0.03),
        "femur_shaft": rng.uniform(0.22, 0.29),
        "tibia_a": rng.uniform(0.52, 0.62),
        "tibia_b": rng.uniform(0.22, 0.3),
        "tibia_shaft": rng.uniform(0.24, 0.31),
        "fibula_u": rng.choice([-1.0, 1.0]) * rng.uniform(0.42, 0.5),
        "gap": rng.uniform(0.05, 0.08),
        "cartilage": rng.uniform(0.02, 0.032),
        "cortex": rng.uniform(0.02, 0.032),
        "intensity": {
            "muscle": rng.uniform(0.3, 0.4),
            "fat": rng.uniform(0.75, 0.9),
            "fluid": rng.uniform(0.45, 0.6),
            "cartilage": rng.uniform(0.82, 0.95),
            "cortex": rng.uniform(0.02, 0.06),
            "marrow": rng.uniform(0.5, 0.65),
        },
        "trabecular_waves": _sample_waves(rng, 192, k_low=30.0, k_high=80.0, kz_max=6.0),
        # Muscle fibres run along the leg (rows), so the waves vary mostly across columns.
        "muscle_waves": _sample_waves(rng, 64, k_low=10.0, k_high=30.0, kz_max=3.0, max_angle=0.35),
        "fat_waves": _sample_waves(rng, 32, k_low=4.0, k_high=12.0, kz_max=2.0),
        "phase": _sample_phase(rng),
    }


def knee_phantom(
    params: PhantomParams, shape: tuple[int, int], z: float, frame: tuple[int, int] | None = None
) -> np.ndarray:
    """Render one knee-like slice: femur and tibia with condyles, trabecular marrow, dark cortex,
    bright cartilage bands at the joint, textured muscle inside a bright fat layer, dark background.

    Args:
        params: from :func:`sample_knee_params`.
        shape: ``(H, W)`` of the slice.
        z: slice position in [-1, 1]; the bones narrow and the joint line shifts with ``z``.
        frame: ``(h, w)`` of the central window that shows the knee as a rendering of that size
            would (fastMRI's recon region inside the oversampled grid); the leg continues beyond it.
            ``None``: the whole slice.

    Returns:
        complex64 ``(H, W)`` with magnitudes in [0, 1] and a smooth random phase.
    """
    v, u, pixel = _grid(shape, frame)
    edge = _EDGE_PIXELS * pixel
    p = params
    size = 1.0 - p["size_falloff_z"] * z**2
    joint = p["joint_v"] + p["joint_shift_z"] * z
    u_leg = u - p["tilt"] * v  # the leg axis is slightly oblique

    leg_half_width = p["leg_half_width"] * (1.0 + p["knee_bulge"] * np.exp(-((v - joint) ** 2) / 0.3))
    d_leg = leg_half_width * (1.0 - 0.08 * z**2) - np.abs(u_leg)

    cu, ca, cb = p["condyle_u"] * size, p["condyle_a"] * size, p["condyle_b"] * size
    condyle_v = joint - p["gap"] / 2 - cb
    d_condyles = np.maximum(
        _ellipse_distance(u_leg, v, -cu, condyle_v + p["condyle_asym"], ca, cb),
        _ellipse_distance(u_leg, v, cu, condyle_v - p["condyle_asym"], ca, cb),
    )
    # The metaphysis joins the condyles above the intercondylar notch.
    d_metaphysis = _ellipse_distance(u_leg, v, 0.0, condyle_v - 0.6 * cb, cu + 0.7 * ca, 1.1 * cb)
    d_femur_shaft = np.minimum(p["femur_shaft"] * size - np.abs(u_leg), condyle_v - v)
    d_femur = np.maximum.reduce([d_condyles, d_metaphysis, d_femur_shaft])

    ta, tb = p["tibia_a"] * size, p["tibia_b"] * size
    plateau_v = joint + p["gap"] / 2 + tb
    d_plateau = _superellipse_distance(u_leg, v, 0.0, plateau_v, ta, tb, power=4.0)
    d_tibia_shaft = np.minimum(p["tibia_shaft"] * size - np.abs(u_leg), v - plateau_v)
    d_tibia = np.maximum(d_plateau, d_tibia_shaft)
    d_fibula = _ellipse_distance(u_leg, v, p["fibula_u"] * size, plateau_v + 0.45, 0.075 * size, 0.3)
    d_bone = np.maximum.reduce([d_femur, d_tibia, d_fibula])

    intensity = p["intensity"]
    muscle = intensity["muscle"] * (1.0 + 0.12 * _wave_field(p["muscle_waves"], v, u, z, pixel))
    fat = intensity["fat"] * (1.0 + 0.05 * _wave_field(p["fat_waves"], v, u, z, pixel))
    trabecular = _wave_field(p["trabecular_waves"], v, u, z, pixel)
    marrow = intensity["marrow"] * (0.8 + 0.2 * np.tanh(trabecular))

    in_leg = _smooth_step(d_leg, edge)
    in_muscle = _smooth_step(d_leg - p["fat_thickness"], edge)
    capsule = _ellipse_distance(u_leg, v, 0.0, joint, ta * 1.05, 0.2 * size)
    joint_window = np.exp(-(((v - joint) / 0.2) ** 2))
    cartilage = p["cartilage"]
    cartilage_band = joint_window * (
        _band(np.maximum(d_condyles, d_metaphysis), cartilage, edge) + _band(d_plateau, cartilage, edge)
    )

    magnitude = np.zeros(np.broadcast_shapes(v.shape, u.shape))
    magnitude = _blend(magnitude, fat, in_leg)
    magnitude = _blend(magnitude, muscle, in_muscle)
    magnitude = _blend(magnitude, intensity["fluid"], _smooth_step(capsule, edge) * in_muscle)
    magnitude = _blend(magnitude, intensity["cartilage"], np.clip(cartilage_band, 0.0, 1.0))
    magnitude = _blend(magnitude, intensity["cortex"], _smooth_step(d_bone, edge))
    magnitude = _blend(magnitude, marrow, _smooth_step(d_bone - p["cortex"], edge))
    return _with_phase(magnitude, p["phase"], v, u, z)


def sample_brain_params(rng: np.random.Generator) -> PhantomParams:
    """Draw the random parameters of one brain-like volume (axial T2 look)."""
    num_dots = int(rng.integers(3, 7))
    dot_radius = rng.uniform(0.0, 0.45, num_dots)
    dot_angle = rng.uniform(0.0, 2 * np.pi, num_dots)
    return {
        "head_a": rng.uniform(0.7, 0.78),
        "head_b": rng.uniform(0.86, 0.94),
        "head_v": rng.uniform(-0.04, 0.04),
        "head_shift_z": rng.uniform(-0.06, 0.06),
        "head_harmonics": rng.normal(0.0, 0.015, 4) + 1j * rng.normal(0.0, 0.015, 4),
        "scalp": rng.uniform(0.04, 0.06),
        "skull": rng.uniform(0.05, 0.07),
        "csf_rim": rng.uniform(0.02, 0.035),
        "gray_thickness": rng.uniform(0.035, 0.05),
        "sulcus_half_width": rng.uniform(0.007, 0.011),
        "sulcus_depth": rng.uniform(0.1, 0.16),
        "fissure_half_width": rng.uniform(0.008, 0.012),
        "ventricle_z": rng.uniform(-0.2, 0.2),
        "ventricle_size": rng.uniform(0.8, 1.2),
        "intensity": {
            "scalp": rng.uniform(0.6, 0.75),
            "skull": rng.uniform(0.02, 0.05),
            "csf": rng.uniform(0.9, 1.0),
            "gray": rng.uniform(0.5, 0.6),
            "white": rng.uniform(0.33, 0.42),
            "deep_gray": rng.uniform(0.44, 0.52),
        },
        "fold_waves": _sample_waves(rng, 64, k_low=4.0, k_high=9.0, kz_max=2.0),
        "sulcus_waves": _sample_waves(rng, 128, k_low=14.0, k_high=24.0, kz_max=4.0),
        "tissue_waves": _sample_waves(rng, 96, k_low=20.0, k_high=40.0, kz_max=4.0),
        "dots": {
            "u": dot_radius * np.cos(dot_angle),
            "v": dot_radius * np.sin(dot_angle),
            "z": rng.uniform(-0.6, 0.6, num_dots),
            "z_extent": rng.uniform(0.25, 0.4, num_dots),
            "radius": rng.uniform(0.025, 0.045, num_dots),
            "intensity": np.where(
                rng.random(num_dots) < 0.7,
                rng.uniform(0.85, 1.0, num_dots),
                rng.uniform(0.08, 0.18, num_dots),
            ),
        },
        "phase": _sample_phase(rng),
    }


def brain_phantom(
    params: PhantomParams, shape: tuple[int, int], z: float, frame: tuple[int, int] | None = None
) -> np.ndarray:
    """Render one brain-like slice: bright scalp ring, dark skull, CSF rim, folded gray/white matter
    with sulci and the interhemispheric fissure, lateral ventricles, deep gray nuclei and a few small
    dots (the "small features" of robustness studies).

    Args:
        params: from :func:`sample_brain_params`.
        shape: ``(H, W)`` of the slice.
        z: slice position in [-1, 1]; the head shrinks towards both ends and the ventricles, deep
            nuclei and dots appear and vanish over their own ``z`` ranges.
        frame: ``(h, w)`` of the central window that holds the head as a rendering of that size
            would (fastMRI's recon region inside the oversampled grid). ``None``: the whole slice.

    Returns:
        complex64 ``(H, W)`` with magnitudes in [0, 1] and a smooth random phase.
    """
    v, u, pixel = _grid(shape, frame)
    edge = _EDGE_PIXELS * pixel
    p = params
    intensity = p["intensity"]
    size = np.sqrt(1.0 - (0.7 * z) ** 2)
    vc = v - p["head_v"] - p["head_shift_z"] * z
    a, b = p["head_a"] * size, p["head_b"] * size
    radius = np.sqrt((u / a) ** 2 + (vc / b) ** 2)
    angle = np.arctan2(vc / b, u / a)
    orders = np.arange(2, 2 + len(p["head_harmonics"]))
    outline = 1.0 + np.real(np.exp(1j * orders * angle[..., None]) @ p["head_harmonics"])
    d_head = (outline - radius) * min(a, b)
    depth = d_head - (p["scalp"] + p["skull"] + p["csf_rim"])  # inside the brain surface

    sulcus, fissure, white = _folds(p, v, u, vc, z, pixel, depth, size, edge)
    ventricles, deep_gray = _deep_structures(p, u, vc, z, depth, edge)
    tissue_texture = 1.0 + 0.04 * _wave_field(p["tissue_waves"], v, u, z, pixel)
    magnitude = np.zeros_like(depth)
    magnitude = _blend(magnitude, intensity["scalp"], _smooth_step(d_head, edge))
    magnitude = _blend(magnitude, intensity["skull"], _smooth_step(d_head - p["scalp"], edge))
    magnitude = _blend(magnitude, intensity["csf"], _smooth_step(d_head - p["scalp"] - p["skull"], edge))
    in_brain = _smooth_step(depth, edge)
    magnitude = _blend(magnitude, intensity["gray"] * tissue_texture, in_brain)
    magnitude = _blend(magnitude, intensity["white"] * tissue_texture, white * in_brain)
    magnitude = _blend(magnitude, intensity["deep_gray"] * tissue_texture, deep_gray * in_brain)
    magnitude = _blend(magnitude, intensity["csf"], np.maximum(sulcus, fissure) * in_brain)
    magnitude = _blend(magnitude, intensity["csf"], ventricles * in_brain)

    magnitude = _add_dots(magnitude, p["dots"], u, vc, z, size, edge, in_brain)
    return _with_phase(magnitude, p["phase"], v, u, z)


def _folds(p: PhantomParams, v, u, vc, z: float, pixel: float, depth, size: float, edge: float):
    """(sulcus, fissure, white): the CSF of the sulci and of the interhemispheric fissure, and the
    white matter beneath the gray-matter ribbon that lines the surface and the sulci."""
    # Sulci are sheets of CSF running in from the brain surface along the zero set of a random
    # field (a network of curves, like gyral folding); the gray-matter ribbon lines both the surface
    # and the sulci, and white matter fills what lies further from either.
    sulcus_depth = p["sulcus_depth"] * (1.0 + 0.35 * _wave_field(p["fold_waves"], v, u, z, pixel))
    sulcus_field = _wave_field(p["sulcus_waves"], v, u, z, pixel)
    # |f| / |grad f| approximates the distance to the zero set of f; for a unit-variance wave sum
    # the rms gradient is the rms wave number.
    sulcus_distance = np.abs(sulcus_field) / _rms_wavenumber(p["sulcus_waves"])
    distance_to_sulcus = np.hypot(sulcus_distance, np.maximum(depth - sulcus_depth, 0.0))
    sulcus = _smooth_step(p["sulcus_half_width"] - sulcus_distance, edge) * _smooth_step(
        sulcus_depth - depth, edge
    )
    fissure = _smooth_step(p["fissure_half_width"] - np.abs(u), edge) * _smooth_step(
        np.abs(vc) - 0.3 * size, edge
    )
    distance_to_csf = np.minimum(depth, distance_to_sulcus)
    white = _smooth_step(distance_to_csf - p["gray_thickness"], edge)
    return sulcus, fissure, white


def _deep_structures(p: PhantomParams, u, vc, z: float, depth, edge: float):
    """(ventricles, deep_gray): the lateral ventricles and deep gray nuclei, present over their own z range."""
    ventricle_scale = p["ventricle_size"] * np.sqrt(max(0.0, 1.0 - ((z - p["ventricle_z"]) / 0.55) ** 2))
    ventricles = np.zeros_like(depth)
    deep_gray = np.zeros_like(depth)
    if ventricle_scale > 0.05:
        s = ventricle_scale
        for side in (-1.0, 1.0):
            ventricles = np.maximum(
                ventricles,
                _smooth_step(_ellipse_distance(u, vc, side * 0.085 * s, -0.06, 0.045 * s, 0.24 * s), edge),
            )
            deep_gray = np.maximum(
                deep_gray,
                _smooth_step(_ellipse_distance(u, vc, side * 0.22 * s, 0.04, 0.08 * s, 0.12 * s), edge),
            )
    return ventricles, deep_gray


def _add_dots(magnitude, dots, u, vc, z: float, size: float, edge: float, in_brain):
    """The small dots (small spheres) blended into the brain where the slice crosses them."""
    for du, dv, dz, extent, r, value in zip(
        dots["u"], dots["v"], dots["z"], dots["z_extent"], dots["radius"], dots["intensity"]
    ):
        # Each dot is a small sphere: its cross-section shrinks to nothing at the ends of its z range.
        r_slice = r * size * np.sqrt(max(0.0, 1.0 - ((z - dz) / extent) ** 2))
        if r_slice > 0.0:
            dot = _smooth_step(r_slice - np.hypot(u - du * size, vc - dv * size), edge)
            magnitude = _blend(magnitude, value, dot * in_brain)
    return magnitude


PHANTOMS: dict[str, tuple[Callable[[np.random.Generator], PhantomParams], Callable[..., np.ndarray]]] = {
    "knee": (sample_knee_params, knee_phantom),
    "brain": (sample_brain_params, brain_phantom),
}
"""Anatomy name -> ``(sample_params(rng), render(params, shape, z, frame=None))``."""


def _grid(shape: tuple[int, int], frame: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Row coordinates ``v`` (H, 1), column coordinates ``u`` (1, W), and the pixel size, in units of
    half the shorter side of ``frame``, the central window at fastMRI's crop offsets ``(H - h) // 2``
    (the whole grid when ``None``)."""
    height, width = int(shape[0]), int(shape[1])
    frame_h, frame_w = (height, width) if frame is None else (int(frame[0]), int(frame[1]))
    if not (0 < frame_h <= height and 0 < frame_w <= width):
        raise ValueError(
            f"phantom shape {tuple(shape)} must be positive and contain frame {(frame_h, frame_w)}"
        )
    half = min(frame_h, frame_w) / 2.0
    top, left = (height - frame_h) // 2, (width - frame_w) // 2
    v = (np.arange(height) - top - (frame_h - 1) / 2.0) / half
    u = (np.arange(width) - left - (frame_w - 1) / 2.0) / half
    return v[:, None], u[None, :], 1.0 / half


def _smooth_step(signed_distance: np.ndarray, edge: float) -> np.ndarray:
    """0 outside, 1 inside, with a tanh transition ``edge`` wide at distance 0."""
    return 0.5 * (1.0 + np.tanh(signed_distance / edge))


def _band(signed_distance: np.ndarray, thickness: float, edge: float) -> np.ndarray:
    """Indicator of the shell just outside a shape (``-thickness < distance < 0``)."""
    return _smooth_step(signed_distance + thickness, edge) - _smooth_step(signed_distance, edge)


def _blend(base: np.ndarray, value: np.ndarray | float, weight: np.ndarray) -> np.ndarray:
    return base + weight * (value - base)


def _ellipse_distance(u: np.ndarray, v: np.ndarray, cu: float, cv: float, a: float, b: float) -> np.ndarray:
    """Approximate signed distance to an ellipse boundary (positive inside)."""
    return _superellipse_distance(u, v, cu, cv, a, b, power=2.0)


def _superellipse_distance(
    u: np.ndarray, v: np.ndarray, cu: float, cv: float, a: float, b: float, power: float
) -> np.ndarray:
    a, b = max(a, 1e-6), max(b, 1e-6)
    level = (np.abs((u - cu) / a) ** power + np.abs((v - cv) / b) ** power) ** (1.0 / power)
    return (1.0 - level) * min(a, b)


def _sample_waves(
    rng: np.random.Generator,
    count: int,
    k_low: float,
    k_high: float,
    kz_max: float,
    max_angle: float = np.pi,
) -> dict[str, np.ndarray]:
    """Random plane waves with in-plane wave numbers in ``[k_low, k_high]`` (radians per unit);
    ``max_angle`` limits the wave direction around the column axis (anisotropic texture)."""
    k = rng.uniform(k_low, k_high, count)
    theta = rng.uniform(-max_angle, max_angle, count)
    return {
        "ku": k * np.cos(theta),
        "kv": k * np.sin(theta),
        "kz": rng.uniform(-kz_max, kz_max, count),
        "offset": rng.uniform(0.0, 2 * np.pi, count),
        "amplitude": np.full(count, np.sqrt(2.0 / count)),  # unit variance for the sum
    }


def _wave_field(
    waves: dict[str, np.ndarray], v: np.ndarray, u: np.ndarray, z: float, pixel: float
) -> np.ndarray:
    """Sum of cosines ``sum_j a_j cos(ku_j u + kv_j v + kz_j z + offset_j)`` on the grid, without the
    waves above half the Nyquist frequency of a grid with this pixel size.

    Separable as ``Re(E_v diag(c) E_u^T)``, one small matrix product instead of an (H, W, N) array.
    """
    nyquist = np.pi / pixel  # radians per unit
    keep = np.hypot(waves["ku"], waves["kv"]) < 0.5 * nyquist
    coefficients = waves["amplitude"] * keep * np.exp(1j * (waves["kz"] * z + waves["offset"]))
    rows = np.exp(1j * np.outer(v.ravel(), waves["kv"]))
    cols = np.exp(1j * np.outer(u.ravel(), waves["ku"]))
    return ((rows * coefficients) @ cols.T).real


def _rms_wavenumber(waves: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(np.mean(waves["ku"] ** 2 + waves["kv"] ** 2)))


def _sample_phase(rng: np.random.Generator) -> dict[str, Any]:
    """Low-order smooth phase: a constant plus bounded polynomial terms of total weight 1,
    scaled by an amplitude of 0.5-1.5 rad."""
    weights = rng.dirichlet(np.ones(6)) * rng.choice([-1.0, 1.0], 6)
    return {"constant": rng.uniform(-np.pi, np.pi), "amplitude": rng.uniform(0.5, 1.5), "weights": weights}


def _with_phase(
    magnitude: np.ndarray, phase: dict[str, Any], v: np.ndarray, u: np.ndarray, z: float
) -> np.ndarray:
    # Terms bounded by 1 on the unit square so the amplitude bounds the variation there.
    un, vn = np.clip(u, -1, 1), np.clip(v, -1, 1)
    basis = (
        un,
        vn,
        un * vn,
        un**2 - vn**2,
        0.5 * (un + vn) * z,
        np.sin(np.pi * un / 2) * np.cos(np.pi * vn / 2),
    )
    field = sum(w * term for w, term in zip(phase["weights"], basis))
    angle = phase["constant"] + phase["amplitude"] * field
    return (np.clip(magnitude, 0.0, 1.0) * np.exp(1j * angle)).astype(np.complex64)
