"""Small features: exact geometry and value of the inserted features, their k-space, placement and scores."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from smug.data import Batch
from smug.evaluation import feature_scores, feature_transform, feature_window, insert_features, place_features
from smug.evaluation import reconstruct_volumes, ring_mask, score_features
from smug.models import ZeroFilled
from smug.mri import forward_operator
from tests.conftest import random_sens_maps

H, W = 32, 32


def _phantom(phase_ramp: float = 0.3) -> torch.Tensor:
    """A smooth ellipse, brighter towards the centre, with a phase ramp; max magnitude 1."""
    rows, cols = torch.meshgrid(
        torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
    )
    radius = ((rows - 15.5) / 13) ** 2 + ((cols - 15.5) / 11) ** 2
    magnitude = torch.where(radius <= 1, 0.6 + 0.4 * (1 - radius), torch.zeros(()))
    image = torch.polar(magnitude, phase_ramp * (cols - 15.5) / 4)
    return image / image.abs().max()


def _batch(coils: int | None, mask: torch.Tensor | None = None) -> Batch:
    gen = torch.Generator().manual_seed(0)
    target = torch.stack([_phantom(0.3), _phantom(-0.5) * 0.9])
    target = target / target.abs().amax(dim=(-2, -1), keepdim=True)
    sens = None if coils is None else random_sens_maps(2, coils, H, W, gen, torch.complex64)
    if mask is None:
        mask = torch.zeros(W, dtype=torch.bool)
        mask[::3] = True
        mask[W // 2 - 2 : W // 2 + 2] = True
    return Batch(
        kspace=forward_operator(target, mask, sens),
        mask=mask,
        target=target,
        sens_maps=sens,
        fnames=["file_a.h5", "file_b.h5"],
        slices=[3, 4],
    )


def test_square_window_has_size_squared_pixels_at_documented_place():
    window = feature_window((H, W), (10, 7), 3)
    assert window.sum() == 9
    assert np.array_equal(np.argwhere(window).min(0), [9, 6])
    assert np.array_equal(np.argwhere(window).max(0), [11, 8])
    even = feature_window((H, W), (10, 7), 4)
    assert even.sum() == 16
    assert np.array_equal(np.argwhere(even).min(0), [8, 5])


def test_disc_window_is_inscribed_in_the_square():
    disc = feature_window((H, W), (10, 10), 5, kind="disc")
    square = feature_window((H, W), (10, 10), 5)
    # Offsets i, j in -2..2 with i^2 + j^2 <= 6.25: the 25 square pixels less the 4 corners.
    assert disc.sum() == 21
    assert not (disc & ~square).any()
    assert disc[10, 10] and disc[8, 10] and not disc[8, 8]


@pytest.mark.parametrize("centre, size", [((0, 10), 3), ((10, 31), 4), ((31, 31), 3)])
def test_window_outside_the_image_is_rejected(centre, size):
    with pytest.raises(ValueError, match="outside the 32x32 image"):
        feature_window((H, W), centre, size)


@pytest.mark.parametrize("coils", [None, 3])
def test_inserted_feature_is_exact_in_image_and_kspace(coils):
    batch = _batch(coils)
    contrast, size = 0.25, 3
    centres = [[(12, 10), (20, 20)], [(16, 16)]]
    out, inserted = insert_features(batch, centres, size, contrast)
    difference = out.target - batch.target
    peaks = batch.target.abs().amax(dim=(-2, -1))
    for index, sample_centres in enumerate(centres):
        window = torch.zeros(H, W, dtype=torch.bool)
        for centre in sample_centres:
            window |= torch.from_numpy(feature_window((H, W), centre, size))
        assert int(window.sum()) == size * size * len(sample_centres)
        assert torch.equal(inserted.masks[index], window)
        expected = contrast * float(peaks[index])
        torch.testing.assert_close(
            difference[index].abs()[window], torch.full((int(window.sum()),), expected)
        )
        assert torch.count_nonzero(difference[index][~window]) == 0
        # The feature carries the target's phase, so the magnitude rises by exactly contrast * max.
        magnitude_rise = out.target[index].abs() - batch.target[index].abs()
        torch.testing.assert_close(magnitude_rise[window], torch.full((int(window.sum()),), expected))
        assert [w.sum() for w in inserted.windows[index]] == [size * size] * len(sample_centres)
    assert inserted.centres == centres
    kspace_difference = out.kspace - batch.kspace
    torch.testing.assert_close(
        kspace_difference,
        forward_operator(difference, batch.mask, batch.sens_maps),
        atol=1e-6,
        rtol=0,
    )
    assert torch.count_nonzero(kspace_difference[..., ~batch.mask]) == 0
    assert torch.count_nonzero(kspace_difference[..., batch.mask]) > 0
    # The caller's batch is untouched.
    assert torch.equal(batch.kspace, _batch(coils).kspace) and torch.equal(batch.target, _batch(coils).target)


def test_kspace_difference_is_the_feature_added_to_every_coil_image():
    """Fully sampled: the new k-space is the k-space of coil images S (x + f)."""
    batch = _batch(3, mask=torch.ones(W, dtype=torch.bool))
    out, _ = insert_features(batch, [[(16, 12)], [(16, 20)]], 2, 0.5)
    coil_images = batch.sens_maps * out.target.unsqueeze(1)
    torch.testing.assert_close(
        out.kspace,
        torch.fft.fftshift(
            torch.fft.fft2(torch.fft.ifftshift(coil_images, dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
        ),
        atol=1e-5,
        rtol=1e-5,
    )


def test_placement_is_inside_the_object_and_windows_do_not_overlap():
    magnitude = _phantom().abs().numpy()
    support = magnitude > 0.1 * magnitude.max()
    centres = place_features(magnitude, 6, 3, np.random.default_rng(0), margin=2, spacing=2)
    assert len(centres) == 6
    windows = [feature_window((H, W), c, 3) for c in centres]
    for window in windows:
        assert not (window & ~support).any()
        rows, cols = np.nonzero(window)
        assert rows.min() >= 2 and cols.min() >= 2 and rows.max() <= H - 3 and cols.max() <= W - 3
    for i, first in enumerate(windows):
        for second in windows[i + 1 :]:
            # spacing 2: even the dilated windows stay apart, so no ring holds another feature.
            assert not (ring_mask(first, 2) & second).any() and not (first & second).any()


def test_impossible_placement_says_how_many_fit():
    magnitude = _phantom().abs().numpy()
    with pytest.raises(ValueError, match=r"only \d+ of 500 requested 3x3"):
        place_features(magnitude, 500, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="only 0 of 1"):
        place_features(magnitude, 1, 40, np.random.default_rng(0))


def _positions(batch: Batch, first_index: int, seed: int) -> dict:
    """Pixels of each slice's features, by (fname, slice), as a feature transform placed them."""
    record: dict = {}
    feature_transform(3, 2, 0.3, seed=seed, record=record)(batch, first_index)
    return {key: [np.argwhere(window).tolist() for window in windows] for key, windows in record.items()}


def test_positions_depend_only_on_slice_and_seed():
    batch = _batch(None)
    first = _positions(batch, 0, seed=5)
    assert first == _positions(batch, 17, seed=5)
    assert first != _positions(batch, 0, seed=6)
    # Slice b alone, in a batch of its own, gets the same features as inside the pair.
    single = dataclasses.replace(
        batch,
        kspace=batch.kspace[1:],
        target=batch.target[1:],
        fnames=batch.fnames[1:],
        slices=batch.slices[1:],
    )
    assert _positions(single, 1, seed=5) == {("file_b.h5", 4): first[("file_b.h5", 4)]}


def test_perfect_recon_recovers_the_feature_and_a_featureless_one_does_not():
    batch = _batch(None)
    out, inserted = insert_features(batch, [[(14, 12)], [(16, 16)]], 3, 0.3)
    target = out.target[0].abs().numpy()
    window = inserted.windows[0][0]
    perfect = feature_scores(target, target, window)
    assert perfect["feature_error"] < 1e-6 and perfect["detected"]
    assert perfect["recovered_contrast"] == pytest.approx(perfect["true_contrast"])
    # Mean/std matching removes a global affine change of intensity.
    rescaled = feature_scores(2 * target + 0.1, target, window)
    assert rescaled["feature_error"] < 1e-6 and rescaled["detected"]
    missing = feature_scores(batch.target[0].abs().numpy(), target, window)
    assert not missing["detected"]
    assert missing["feature_error"] > 0.05
    assert missing["true_contrast"] > 0.2


def test_transform_in_reconstruct_volumes_and_scores_per_feature():
    """Fully sampled zero-filled recon is the target itself: every feature is found exactly."""
    batch = _batch(2, mask=torch.ones(W, dtype=torch.bool))
    dataset = [
        {
            "kspace": batch.kspace[i],
            "mask": batch.mask,
            "target": batch.target[i],
            "sens_maps": batch.sens_maps[i],
            "fname": batch.fnames[i],
            "slice": batch.slices[i],
        }
        for i in range(2)
    ]
    record: dict = {}
    transform = feature_transform(2, 3, 0.3, seed=1, record=record)
    volumes = reconstruct_volumes(ZeroFilled(), dataset, torch.device("cpu"), 2, 0, transform=transform)
    assert set(record) == {("file_a.h5", 3), ("file_b.h5", 4)}
    rows = score_features(volumes, record)
    assert len(rows) == 4
    assert all(row["detected"] and row["feature_error"] < 1e-4 for row in rows)


def test_bad_inputs_name_the_culprit():
    batch = _batch(None)
    with pytest.raises(ValueError, match="for 1 samples but the batch has 2"):
        insert_features(batch, [[(10, 10)]], 3, 0.3)
    with pytest.raises(ValueError, match="overlap"):
        insert_features(batch, [[(10, 10), (11, 11)], []], 3, 0.3)
    with pytest.raises(ValueError, match="contrast"):
        insert_features(batch, [[], []], 3, 0.0)
    with pytest.raises(ValueError, match="unknown feature kind 'star'"):
        feature_window((H, W), (10, 10), 3, kind="star")
    with pytest.raises(ValueError, match="file_a.h5 slice 3"):
        feature_transform(50, 6, 0.3, seed=0)(batch, 0)
