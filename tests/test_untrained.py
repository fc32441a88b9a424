"""Self-supervised k-space losses, the held-out column split and the untrained-network baseline."""

from __future__ import annotations

import math

import pytest
import torch

from smug.mri import (
    MRIPhysics,
    fft2c,
    adjoint_operator,
    forward_operator,
    kspace_consistency_loss,
    split_mask,
)
from smug.models import ConvDecoder, UntrainedNetwork, fit_untrained, slice_seed
from tests.conftest import random_complex, random_sens_maps

WIDTH = 32
# Fully sampled centre (columns 13..18, around DC column 16) plus scattered outer columns.
SAMPLED_COLUMNS = [7, 9, 13, 14, 15, 16, 17, 18, 20, 27, 28, 30, 31]


@pytest.fixture(autouse=True)
def single_thread():
    # Thousands of tiny convolutions: intra-op threads only contend for the shared cores (10x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def column_mask(columns=SAMPLED_COLUMNS, width=WIDTH) -> torch.Tensor:
    mask = torch.zeros(width, dtype=torch.bool)
    mask[columns] = True
    return mask


def smooth_phantom(size: int = WIDTH) -> torch.Tensor:
    """A soft-edged ellipse plus a Gaussian blob, with a linear phase; max magnitude 1."""
    v, u = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    radius = torch.sqrt((u / 0.6) ** 2 + (v / 0.75) ** 2)
    magnitude = 0.7 * torch.sigmoid(12 * (1 - radius)) + 0.3 * torch.exp(
        -(((u - 0.25) / 0.2) ** 2) - ((v + 0.2) / 0.25) ** 2
    )
    magnitude = magnitude / magnitude.max()
    return (magnitude * torch.exp(0.5j * u)).to(torch.complex64)


def magnitude_psnr(target: torch.Tensor, image: torch.Tensor) -> float:
    mse = ((target.abs() - image.abs()) ** 2).mean()
    return float(10 * torch.log10(target.abs().max() ** 2 / mse))


def holdout_mask_of(info: dict) -> torch.Tensor:
    return column_mask(info["holdout_columns"])


# ----------------------------------------------------------------------------- split_mask


def test_split_mask_partitions_sampled_columns_and_keeps_centre():
    mask = column_mask()
    train, holdout = split_mask(mask, 0.3, torch.Generator().manual_seed(3))
    assert train.dtype == torch.bool and train.shape == mask.shape
    assert not (train & holdout).any()
    assert torch.equal(train | holdout, mask)
    assert int(holdout.sum()) == round(0.3 * len(SAMPLED_COLUMNS))
    assert train[WIDTH // 2] and not holdout[WIDTH // 2]


def test_split_mask_holds_out_at_least_one_and_none_for_zero_fraction():
    mask = column_mask()
    _, holdout = split_mask(mask, 0.01, torch.Generator().manual_seed(0))
    assert int(holdout.sum()) == 1
    train, holdout = split_mask(mask, 0.0, torch.Generator().manual_seed(0))
    assert not holdout.any() and torch.equal(train, mask)


def test_split_mask_never_holds_out_centre_over_many_draws():
    mask = column_mask()
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        _, holdout = split_mask(mask, 0.9, generator)
        assert not holdout[WIDTH // 2]
        assert int(holdout.sum()) == round(0.9 * len(SAMPLED_COLUMNS))


def test_split_mask_is_deterministic_and_depends_on_generator():
    mask = column_mask()
    splits = [split_mask(mask, 0.4, torch.Generator().manual_seed(seed))[1] for seed in (5, 5, 6)]
    assert torch.equal(splits[0], splits[1])
    assert not torch.equal(splits[0], splits[2])


def test_split_mask_batched_rows_split_independently():
    masks = torch.stack([column_mask(), column_mask([1, 4, 15, 16, 17, 25])])
    train, holdout = split_mask(masks, 0.5, torch.Generator().manual_seed(1))
    assert train.shape == masks.shape
    assert torch.equal(train | holdout, masks) and not (train & holdout).any()
    assert holdout.sum(1).tolist() == [round(0.5 * 13), round(0.5 * 6)]
    assert train[:, WIDTH // 2].all()


@pytest.mark.parametrize(
    "mask, fraction, match",
    [
        (column_mask([16]), 0.1, "holdout_fraction"),  # only the centre is sampled
        (column_mask(), 1.0, "holdout_fraction"),
        (torch.ones(2, 3, WIDTH, dtype=torch.bool), 0.1, "column mask"),
    ],
)
def test_split_mask_rejects_impossible_requests(mask, fraction, match):
    with pytest.raises(ValueError, match=match):
        split_mask(mask, fraction, torch.Generator().manual_seed(0))


# ------------------------------------------------------------------ kspace_consistency_loss


def test_consistency_loss_zero_for_perfect_image_and_one_for_zero_image(gen):
    image = random_complex((2, 16, WIDTH), gen)
    sens = random_sens_maps(2, 3, 16, WIDTH, gen)
    mask = column_mask()
    kspace = forward_operator(image, torch.ones(WIDTH, dtype=torch.bool), sens)  # fully sampled
    assert float(kspace_consistency_loss(image, kspace, mask, sens)) < 1e-12
    assert float(kspace_consistency_loss(torch.zeros_like(image), kspace, mask, sens)) == pytest.approx(1.0)
    # Per-sample average: one perfect and one empty reconstruction give one half.
    half = torch.stack([image[0], torch.zeros_like(image[1])])
    assert float(kspace_consistency_loss(half, kspace, mask, sens)) == pytest.approx(0.5)


def test_consistency_loss_matches_relative_l1_of_complex_magnitudes(gen):
    image = random_complex((1, 8, WIDTH), gen)
    kspace = random_complex((1, 1, 8, WIDTH), gen)
    mask = column_mask()
    residual = (fft2c(image)[:, None] - kspace)[..., mask]
    expected = residual.abs().sum() / kspace[..., mask].abs().sum()
    assert float(kspace_consistency_loss(image, kspace, mask)) == pytest.approx(float(expected))


def test_consistency_loss_ignores_unmasked_kspace_only(gen):
    image = random_complex((1, 16, WIDTH), gen)
    kspace = random_complex((1, 1, 16, WIDTH), gen)
    mask = column_mask()
    noise = random_complex((1, 1, 16, WIDTH), gen)
    reference = kspace_consistency_loss(image, kspace, mask)
    off_mask_change = kspace + noise * (~mask)
    on_mask_change = kspace + noise * mask
    assert float(kspace_consistency_loss(image, off_mask_change, mask)) == pytest.approx(float(reference))
    assert float(kspace_consistency_loss(image, on_mask_change, mask)) != pytest.approx(float(reference))


def test_consistency_loss_rejects_mismatched_shapes(gen):
    image = random_complex((1, 16, WIDTH), gen)
    with pytest.raises(ValueError, match="does not match"):
        kspace_consistency_loss(image, random_complex((1, 1, 16, WIDTH - 2), gen), column_mask())
    with pytest.raises(ValueError, match="sens_maps"):
        kspace_consistency_loss(image, random_complex((1, 3, 16, WIDTH), gen), column_mask())


# ------------------------------------------------------------------------------ ConvDecoder


def test_conv_decoder_shape_and_seeded_determinism():
    outputs = [
        ConvDecoder((20, 28), channels=8, num_layers=3, generator=torch.Generator().manual_seed(seed))()
        for seed in (0, 0, 1)
    ]
    assert outputs[0].shape == (1, 2, 20, 28)
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.allclose(outputs[0], outputs[2])


# ---------------------------------------------------------------------------- fit_untrained


def test_fit_lowers_training_loss_and_beats_zero_filled_on_smooth_phantom():
    target = smooth_phantom()
    mask = column_mask()
    kspace = forward_operator(target[None], mask)
    zero_filled = adjoint_operator(kspace, mask)[0]
    image, info = fit_untrained(
        kspace,
        mask,
        None,
        num_iters=100,
        lr=0.02,
        channels=16,
        num_layers=5,
        holdout_fraction=0.1,
        patience=1000,
        seed=1,
    )
    assert image.shape == target.shape and torch.is_complex(image)
    assert info["iterations"] == 100 and not info["stopped_early"]
    assert info["final_train_loss"] < 0.1 * info["initial_train_loss"]
    assert info["best_holdout_loss"] < 0.5 * info["initial_holdout_loss"]
    assert magnitude_psnr(target, image) > magnitude_psnr(target, zero_filled) + 2.0


def test_early_stopping_returns_best_held_out_iterate():
    target = smooth_phantom()
    mask = column_mask()
    kspace = forward_operator(target[None], mask)
    num_iters = 200
    # A large learning rate makes the held-out loss jump about; patience 1 stops at the first rise.
    image, info = fit_untrained(
        kspace,
        mask,
        None,
        num_iters=num_iters,
        lr=0.3,
        channels=16,
        num_layers=4,
        holdout_fraction=0.2,
        patience=1,
        seed=0,
    )
    assert info["stopped_early"]
    assert info["iterations"] < num_iters
    assert info["best_iteration"] == info["iterations"] - 1
    assert info["final_holdout_loss"] > info["best_holdout_loss"]
    returned_loss = kspace_consistency_loss(image[None], kspace, holdout_mask_of(info))
    assert float(returned_loss) == pytest.approx(info["best_holdout_loss"], rel=1e-4)


def test_fit_keeps_best_iterate_not_last_when_patient():
    target = smooth_phantom()
    mask = column_mask()
    kspace = forward_operator(target[None], mask)
    image, info = fit_untrained(
        kspace,
        mask,
        None,
        num_iters=40,
        lr=0.3,
        channels=16,
        num_layers=4,
        holdout_fraction=0.2,
        patience=1000,
        seed=0,
    )
    assert not info["stopped_early"] and info["iterations"] == 40
    assert info["best_iteration"] < 40
    returned_loss = float(kspace_consistency_loss(image[None], kspace, holdout_mask_of(info)))
    assert returned_loss == pytest.approx(info["best_holdout_loss"], rel=1e-4)
    assert returned_loss < info["final_holdout_loss"]


def test_fit_multicoil_without_holdout_returns_last_iterate(gen):
    sens = random_sens_maps(1, 3, 16, WIDTH, gen, dtype=torch.complex64)
    mask = column_mask()
    kspace = forward_operator(smooth_phantom()[None, :16], mask, sens)
    image, info = fit_untrained(
        kspace,
        mask,
        sens,
        num_iters=15,
        lr=0.02,
        channels=8,
        num_layers=3,
        holdout_fraction=0.0,
        patience=1,
        seed=0,
    )
    assert image.shape == (16, WIDTH) and image.dtype == torch.complex64
    assert info["best_holdout_loss"] is None and info["holdout_columns"] == []
    assert info["best_iteration"] == info["iterations"] == 15
    assert info["final_train_loss"] < info["initial_train_loss"]
    final_loss = float(kspace_consistency_loss(image[None], kspace, mask, sens))
    assert final_loss == pytest.approx(info["final_train_loss"], rel=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kspace": torch.zeros(2, 1, 8, WIDTH, dtype=torch.complex64)}, "one slice"),
        ({"mask": torch.ones(WIDTH + 1, dtype=torch.bool)}, "mask"),
        ({"patience": 0}, "patience=0"),
        ({"holdout_fraction": 1.5}, "holdout_fraction=1.5"),
        ({"kspace": torch.zeros(1, 1, 8, WIDTH, dtype=torch.complex64)}, "zero on every training column"),
    ],
)
def test_fit_untrained_rejects_bad_input(kwargs, match):
    arguments = {
        "kspace": forward_operator(smooth_phantom()[None, :8], column_mask()),
        "mask": column_mask(),
        "sens_maps": None,
        "num_iters": 2,
        "lr": 0.01,
        "channels": 4,
        "num_layers": 2,
        "holdout_fraction": 0.1,
        "patience": 1,
        "seed": 0,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fit_untrained(**arguments)


# -------------------------------------------------------------------------- UntrainedNetwork


def small_network(**overrides) -> UntrainedNetwork:
    settings = dict(
        num_iters=8, lr=0.02, channels=8, num_layers=3, holdout_fraction=0.1, patience=100, seed=7
    )
    settings.update(overrides)
    return UntrainedNetwork(**settings)


def test_untrained_network_runs_under_no_grad_and_is_repeatable():
    batch_images = torch.stack([smooth_phantom()[:16], smooth_phantom().flip(-1)[:16]])
    mask = column_mask()
    kspace = forward_operator(batch_images, mask)
    model = small_network().eval()
    with torch.no_grad():
        first = model(kspace, MRIPhysics(mask))
    with torch.inference_mode():
        second = model(kspace, MRIPhysics(mask))
    assert first.shape == (2, 16, WIDTH) and torch.is_complex(first)
    assert torch.equal(first, second)
    assert len(model.last_info) == 2 and all(info["iterations"] == 8 for info in model.last_info)
    # Each slice equals a direct fit with its derived seed.
    direct, _ = fit_untrained(
        kspace[1:2],
        mask,
        None,
        num_iters=8,
        lr=0.02,
        channels=8,
        num_layers=3,
        holdout_fraction=0.1,
        patience=100,
        seed=slice_seed(7, 1),
    )
    assert torch.equal(first[1], direct)


def test_untrained_network_single_coil_zero_filled_input_reproduces_measurements():
    mask = column_mask()
    kspace = forward_operator(smooth_phantom()[None, :16], mask)
    model = small_network()
    from_kspace = model(kspace, MRIPhysics(mask))
    from_image = model(kspace, MRIPhysics(mask, zero_filled=adjoint_operator(kspace, mask)))
    assert torch.allclose(from_kspace, from_image, atol=1e-3)
    perturbed = model(kspace, MRIPhysics(mask, zero_filled=adjoint_operator(kspace, mask) + 0.05))
    assert not torch.allclose(from_kspace, perturbed, atol=1e-3)


def test_slice_seeds_differ_between_positions_and_base_seeds():
    seeds = {slice_seed(base, index) for base in range(3) for index in range(3)}
    assert len(seeds) == 9
    assert slice_seed(4, 2) == slice_seed(4, 2)


def test_record_round_trip_and_rejections():
    model = small_network(lr=0.005, check_every=3)
    record = model.to_record()
    assert record["kind"] == "untrained" and record["lr"] == 0.005 and record["check_every"] == 3
    rebuilt = UntrainedNetwork.from_record(record)
    assert rebuilt.to_record() == record
    with pytest.raises(ValueError, match="kind 'modl'"):
        UntrainedNetwork.from_record({**record, "kind": "modl"})
    with pytest.raises(ValueError, match="depth"):
        UntrainedNetwork.from_record({**record, "depth": 3})
    with pytest.raises(ValueError, match="num_iters=-1"):
        UntrainedNetwork.from_record({**record, "num_iters": -1})
    assert math.isclose(UntrainedNetwork.from_record({"kind": "untrained"}).holdout_fraction, 0.05)
