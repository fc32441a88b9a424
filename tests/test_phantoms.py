"""Phantom generators and coil sensitivities."""

from __future__ import annotations

import numpy as np
import pytest

from smug.data import birdcage_sensitivities, normalize_sensitivities, PHANTOMS

SHAPE = (48, 48)
ANATOMIES = sorted(PHANTOMS)


def render(anatomy: str, seed: int, z: float, shape: tuple[int, int] = SHAPE, frame=None) -> np.ndarray:
    sample_params, render_slice = PHANTOMS[anatomy]
    return render_slice(sample_params(np.random.default_rng(seed)), shape, z, frame=frame)


@pytest.mark.parametrize("anatomy", ANATOMIES)
def test_deterministic_per_seed(anatomy: str) -> None:
    first = render(anatomy, 11, 0.3)
    np.testing.assert_array_equal(first, render(anatomy, 11, 0.3))
    assert not np.allclose(np.abs(first), np.abs(render(anatomy, 12, 0.3)), atol=1e-2)


@pytest.mark.parametrize("anatomy", ANATOMIES)
@pytest.mark.parametrize("z", [-1.0, 0.0, 1.0])
def test_dtype_range_and_content(anatomy: str, z: float) -> None:
    image = render(anatomy, 3, z)
    assert image.dtype == np.complex64 and image.shape == SHAPE
    magnitude = np.abs(image)
    assert magnitude.min() >= 0.0 and magnitude.max() <= 1.0 + 1e-6
    # A real object, not an empty or saturated frame: dark background plus bright structures.
    assert magnitude.max() > 0.6
    assert (magnitude < 0.05).mean() > 0.02
    assert 0.15 < (magnitude > 0.2).mean() < 0.95


@pytest.mark.parametrize("anatomy", ANATOMIES)
def test_smooth_random_phase(anatomy: str) -> None:
    image = render(anatomy, 5, 0.0)
    inside = np.abs(image) > 0.2
    phase = np.angle(image * np.conj(image[inside].mean()))  # relative to the mean, away from wrapping
    spread = phase[inside].max() - phase[inside].min()
    assert 0.1 < spread < 3.5
    # Smooth: neighbouring object pixels differ by a small phase step.
    step = np.abs(np.angle(image[:, 1:] * np.conj(image[:, :-1])))[inside[:, 1:] & inside[:, :-1]]
    assert step.max() < 0.2


def test_anatomies_differ() -> None:
    knee, brain = np.abs(render("knee", 0, 0.0)), np.abs(render("brain", 0, 0.0))
    assert np.linalg.norm(knee - brain) > 0.3 * np.linalg.norm(knee)
    # The knee's leg runs off the top and bottom of the frame; the head does not.
    assert np.abs(knee[0]).mean() > 0.2 and np.abs(brain[0]).mean() < 0.05


@pytest.mark.parametrize("anatomy", ANATOMIES)
def test_slices_change_smoothly_with_z(anatomy: str) -> None:
    base = np.abs(render(anatomy, 7, 0.2))
    near = np.abs(render(anatomy, 7, 0.21))
    far = np.abs(render(anatomy, 7, 0.8))
    small_step = np.linalg.norm(near - base)
    assert small_step > 0  # z matters at all
    assert small_step < 0.05 * np.linalg.norm(base)
    assert np.linalg.norm(far - base) > 5 * small_step


@pytest.mark.parametrize("anatomy", ANATOMIES)
def test_frame_shows_the_same_object(anatomy: str) -> None:
    framed = render(anatomy, 2, 0.1, shape=(64, 32), frame=(32, 32))
    np.testing.assert_allclose(framed[16:48], render(anatomy, 2, 0.1, shape=(32, 32)), atol=1e-5)


def test_impossible_frame_raises() -> None:
    with pytest.raises(ValueError, match="frame"):
        render("knee", 0, 0.0, shape=(16, 16), frame=(32, 16))


@pytest.mark.parametrize("num_coils", [1, 4, 7])
def test_sensitivities_normalised(num_coils: int) -> None:
    maps = birdcage_sensitivities(num_coils, (40, 24), np.random.default_rng(0))
    assert maps.shape == (num_coils, 40, 24) and maps.dtype == np.complex64
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(0), 1.0, rtol=1e-5)


def test_sensitivities_are_smooth_and_distinct() -> None:
    maps = birdcage_sensitivities(4, (32, 32))
    magnitude = np.abs(maps)
    # Each coil is brightest on its own side and the maps vary slowly from pixel to pixel.
    assert len({np.unravel_index(m.argmax(), m.shape) for m in magnitude}) == 4
    assert np.abs(np.diff(maps, axis=-1)).max() < 0.1
    np.testing.assert_array_equal(maps, birdcage_sensitivities(4, (32, 32)))
    rotated = birdcage_sensitivities(4, (32, 32), np.random.default_rng(1))
    assert not np.allclose(rotated, maps)


def test_normalize_keeps_zero_pixels_zero() -> None:
    maps = np.zeros((2, 3, 3), dtype=np.complex128)
    maps[0, 1, 1] = 2.0
    maps[1, 1, 1] = 2.0j
    normalised = normalize_sensitivities(maps)
    assert normalised[:, 0, 0].tolist() == [0, 0]
    np.testing.assert_allclose((np.abs(normalised[:, 1, 1]) ** 2).sum(), 1.0)


def test_invalid_coil_count() -> None:
    with pytest.raises(ValueError, match="num_coils"):
        birdcage_sensitivities(0, (8, 8))
