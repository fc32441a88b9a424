"""Tests of smug.mri.masks, smug.reporting.plots.plot_masks and scripts/make_masks.py.

Expected fastMRI masks are re-derived here, draw by draw, from the algorithm fastMRI v0.3
documents (seed a RandomState, randint for the (fraction, acceleration) pair, then the
type-specific draws), independently of the library's class structure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from smug.mri import apply_mask, column_mask, create_mask_for_mask_type, EquiSpacedMaskFunc, load_mask
from smug.mri import MagicMaskFunc, MaskFunc, RandomMaskFunc, save_mask, variable_density_mask
from smug.mri import VariableDensityMaskFunc

REPO = Path(__file__).resolve().parents[1]
FNAME_SEED = tuple(map(ord, "file1000001.h5"))
WIDTHS = [368, 372, 320, 64]
SEEDS = [1234, FNAME_SEED]
FRACTIONS, ACCELERATIONS = [0.08, 0.04], [4, 8]


def columns_of(mask: torch.Tensor) -> np.ndarray:
    return mask.reshape(-1).numpy() > 0


def center_block(width: int, num_low: int) -> np.ndarray:
    block = np.zeros(width, dtype=bool)
    start = (width - num_low + 1) // 2
    block[start : start + num_low] = True
    return block


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("seed", SEEDS)
def test_random_mask_reproduces_fastmri_draws(width, seed):
    rng = np.random.RandomState(seed)
    pair = rng.randint(2)
    fraction, acceleration = FRACTIONS[pair], ACCELERATIONS[pair]
    num_low = round(width * fraction)
    prob = (width / acceleration - num_low) / (width - num_low)
    expected = rng.uniform(size=width) < prob
    expected[(width - num_low + 1) // 2 : (width - num_low + 1) // 2 + num_low] = True

    mask, got_num_low = RandomMaskFunc(FRACTIONS, ACCELERATIONS)((2, 640, width, 2), seed=seed)

    assert mask.dtype == torch.float32
    assert mask.shape == (1, 1, width, 1)
    assert got_num_low == num_low
    np.testing.assert_array_equal(columns_of(mask), expected)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("seed", SEEDS)
def test_equispaced_mask_reproduces_fastmri_draws(width, seed):
    rng = np.random.RandomState(seed)
    pair = rng.randint(2)
    fraction, acceleration = FRACTIONS[pair], ACCELERATIONS[pair]
    num_low = round(width * fraction)
    offset = rng.randint(0, acceleration)
    expected = center_block(width, num_low)
    expected[offset::acceleration] = True

    mask, got_num_low = create_mask_for_mask_type("equispaced", FRACTIONS, ACCELERATIONS)(
        (640, width, 2), seed=seed
    )

    assert got_num_low == num_low
    np.testing.assert_array_equal(columns_of(mask), expected)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("seed", SEEDS)
def test_equispaced_fraction_reproduces_fastmri_draws_and_count(width, seed):
    rng = np.random.RandomState(seed)
    pair = rng.randint(2)
    fraction, acceleration = FRACTIONS[pair], ACCELERATIONS[pair]
    num_low = round(width * fraction)
    spacing = acceleration * (width - num_low) / (width - num_low * acceleration)
    offset = rng.randint(0, round(spacing))
    expected = center_block(width, num_low)
    line = 0
    while offset + line * spacing < width - 1:
        expected[int(np.round(offset + line * spacing))] = True
        line += 1

    mask, _ = create_mask_for_mask_type("equispaced_fraction", FRACTIONS, ACCELERATIONS)(
        (640, width, 2), seed=seed
    )

    columns = columns_of(mask)
    np.testing.assert_array_equal(columns, expected)
    assert abs(columns.sum() - round(width / acceleration)) <= 2


def test_magic_mask_matches_hand_derived_offset_sampling():
    # W = 10, DC at column 5, acceleration 4. Offset 0: positive frequencies +1 (+5 is out of
    # range) -> column 6; negative frequencies -(2 + 1) = -3 -> column 2. Offset 1: positive +3
    # -> column 8; negative -(0 + 1), -(4 + 1) -> columns 4 and 0. The centre is column 5.
    mask_func = MagicMaskFunc([0.1], [4])
    mask_even, num_low = mask_func((4, 10, 2), offset=0)
    mask_odd, _ = mask_func((4, 10, 2), offset=1)

    assert num_low == 1
    assert np.flatnonzero(columns_of(mask_even)).tolist() == [2, 5, 6]
    assert np.flatnonzero(columns_of(mask_odd)).tolist() == [0, 4, 5, 8]


@pytest.mark.parametrize("width", WIDTHS + [15])
@pytest.mark.parametrize("acceleration", [4, 8])
def test_magic_mask_never_samples_a_line_and_its_conjugate(width, acceleration):
    mask_func = create_mask_for_mask_type("magic", [0.0], [acceleration])
    for offset in range(acceleration):
        columns = np.flatnonzero(columns_of(mask_func((1, width, 2), offset=offset)[0]))
        assert columns.size >= width // acceleration - 1
        mirrored = set((2 * (width // 2) - columns).tolist())
        assert not mirrored & set(columns.tolist()), (width, acceleration, offset)


@pytest.mark.parametrize("seed", SEEDS + [0, 1, 2, 3])
def test_magic_random_offset_is_drawn_like_fastmri(seed):
    offset = np.random.RandomState(seed).randint(0, 8)  # one pair: randint(1) draws nothing
    mask_func = create_mask_for_mask_type("magic", [0.04], [8])
    with_drawn_offset, _ = mask_func((1, 368, 2), seed=seed)
    with_given_offset, _ = mask_func((1, 368, 2), offset=offset)
    assert torch.equal(with_drawn_offset, with_given_offset)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("acceleration", [4, 8])
def test_magic_fraction_keeps_about_target_columns(width, acceleration):
    target = round(width / acceleration)
    mask_func = create_mask_for_mask_type("magic_fraction", [0.32 / acceleration], [acceleration])
    for seed in SEEDS:
        mask, num_low = mask_func((1, width, 2), seed=seed)
        count = int(columns_of(mask).sum())
        assert center_block(width, num_low)[columns_of(mask)].sum() == num_low
        # Outer lines landing inside the centre are not replaced, so it may undershoot a little.
        assert 0.85 * target <= count <= target + 1, (count, target)


def test_magic_fraction_clips_the_centre_to_the_target():
    # 50% centre at 4x: the centre is clipped to W / 4 columns and nothing else is sampled.
    mask, num_low = create_mask_for_mask_type("magic_fraction", [0.5], [4])((1, 64, 2), seed=0)
    assert num_low == 16
    np.testing.assert_array_equal(columns_of(mask), center_block(64, 16))


@pytest.mark.parametrize("seed", SEEDS + [0, 1, 2])
def test_any_combination_draws_fraction_then_acceleration_with_choice(seed):
    fractions, accelerations = [0.08, 0.04, 0.06], [4, 8]
    rng = np.random.RandomState(seed)
    fraction, acceleration = rng.choice(fractions), rng.choice(accelerations)
    num_low = round(368 * fraction)
    expected = rng.uniform(size=368) < (368 / acceleration - num_low) / (368 - num_low)
    expected |= center_block(368, num_low)

    mask_func = create_mask_for_mask_type("random", fractions, accelerations, allow_any_combination=True)
    mask, got_num_low = mask_func((1, 368, 2), seed=seed)

    assert got_num_low == num_low
    np.testing.assert_array_equal(columns_of(mask), expected)


def test_centre_block_location_and_size():
    for width, fraction in [(368, 0.08), (372, 0.08), (320, 0.04), (64, 0.04), (15, 0.2)]:
        # An offset past the last column leaves only the centre.
        mask, num_low = EquiSpacedMaskFunc([fraction], [4])((1, width, 2), offset=width)
        assert num_low == round(width * fraction)
        start = (width - num_low + 1) // 2
        assert np.flatnonzero(columns_of(mask)).tolist() == list(range(start, start + num_low))
        assert start <= width // 2 < start + num_low  # the block covers the DC column


def test_seed_in_call_restores_rng_state_and_unseeded_calls_advance_it():
    mask_func = RandomMaskFunc([0.08], [4], seed=7)
    before = mask_func.rng.get_state()
    first, _ = mask_func((1, 368, 2), seed=FNAME_SEED)
    after = mask_func.rng.get_state()
    assert np.array_equal(before[1], after[1]) and before[2:] == after[2:]

    second, _ = mask_func((1, 368, 2), seed=FNAME_SEED)
    assert torch.equal(first, second)

    unseeded_a, _ = mask_func((1, 368, 2))
    unseeded_b, _ = mask_func((1, 368, 2))
    assert not torch.equal(unseeded_a, unseeded_b)
    # The constructor seed makes the unseeded sequence reproducible.
    replay = RandomMaskFunc([0.08], [4], seed=7)
    assert torch.equal(replay((1, 368, 2))[0], unseeded_a)


def test_unknown_mask_type_names_it_and_lists_valid_types():
    with pytest.raises(ValueError, match=r"'radial'.*random.*variable_density"):
        create_mask_for_mask_type("radial", [0.08], [4])


def test_short_shape_and_mismatched_lists_raise():
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        RandomMaskFunc([0.08], [4])((368, 2))
    with pytest.raises(ValueError, match="same length"):
        RandomMaskFunc([0.08, 0.04], [4])
    with pytest.raises(ValueError, match="must be an integer"):
        EquiSpacedMaskFunc([0.08], [2.5])((1, 64, 2))


def test_base_mask_func_is_abstract():
    with pytest.raises(NotImplementedError):
        MaskFunc([0.08], [4])((1, 64, 2))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("acceleration, fraction", [(2, 0.16), (4, 0.08), (8, 0.04)])
def test_variable_density_mask_exact_count_and_full_centre(width, acceleration, fraction):
    for seed in SEEDS:
        mask = variable_density_mask(width, acceleration, fraction, seed)
        assert mask.dtype == bool and mask.shape == (width,)
        assert mask.sum() == round(width / acceleration)
        assert mask[center_block(width, round(width * fraction))].all()


def test_variable_density_mask_is_seeded_and_denser_near_the_centre():
    assert np.array_equal(variable_density_mask(368, 4, 0.08, 3), variable_density_mask(368, 4, 0.08, 3))
    assert not np.array_equal(variable_density_mask(368, 4, 0.08, 3), variable_density_mask(368, 4, 0.08, 4))

    hits = sum(variable_density_mask(64, 4, 0.0, seed).astype(int) for seed in range(40))
    distance = np.abs(np.arange(64) - 32)
    assert hits[distance < 16].sum() > 2 * hits[distance >= 16].sum()


def test_variable_density_mask_func_matches_the_function():
    mask_func = create_mask_for_mask_type("variable_density", [0.08], [4])
    assert isinstance(mask_func, VariableDensityMaskFunc)
    mask, num_low = mask_func((2, 640, 372, 2), seed=FNAME_SEED)
    assert num_low == round(372 * 0.08)
    np.testing.assert_array_equal(columns_of(mask), variable_density_mask(372, 4, 0.08, FNAME_SEED))


def test_variable_density_rejects_centre_larger_than_target():
    with pytest.raises(ValueError, match="center_fraction or acceleration"):
        variable_density_mask(100, 8, 0.2, 0)


def test_column_mask_and_apply_mask():
    mask, _ = RandomMaskFunc([0.08], [4])((3, 8, 16, 2), seed=0)
    columns = column_mask(mask)
    assert columns.dtype == torch.bool and columns.shape == (16,)

    kspace = torch.randn(3, 8, 16, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    masked = apply_mask(kspace, mask)
    assert torch.equal(masked[..., columns], kspace[..., columns])
    assert torch.count_nonzero(masked[..., ~columns]) == 0

    with pytest.raises(ValueError, match=r"mask width 16 does not match k-space width 12"):
        apply_mask(torch.zeros(8, 12, dtype=torch.complex64), columns)
    with pytest.raises(ValueError, match="not a column mask"):
        column_mask(torch.ones(4, 4))


def test_save_and_load_mask_round_trip_and_bad_files(tmp_path):
    columns = variable_density_mask(64, 4, 0.08, 0)
    path = tmp_path / "4x.npz"
    save_mask(
        path,
        columns,
        num_low_frequencies=5,
        acceleration=4,
        center_fraction=0.08,
        mask_type="variable_density",
        seed=0,
    )
    assert torch.equal(load_mask(path), torch.from_numpy(columns))
    with np.load(path) as saved:
        assert float(saved["realised_acceleration"]) == pytest.approx(4.0)
        assert str(saved["mask_type"]) == "variable_density"
    assert [p.name for p in tmp_path.iterdir()] == ["4x.npz"]  # no temporary left behind

    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_mask(tmp_path / "missing.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt.npz"):
        load_mask(corrupt)
    no_mask = tmp_path / "no_mask.npz"
    np.savez(no_mask, other=np.ones(3))
    with pytest.raises(ValueError, match="no_mask.npz.*no 'mask'"):
        load_mask(no_mask)


def test_make_masks_script_writes_masks_and_figure(tmp_path):
    out_dir, figure = tmp_path / "masks", tmp_path / "figures" / "masks.png"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_masks.py"),
            "--mask-type",
            "random",
            "--accelerations",
            "2",
            "4",
            "--center-fractions",
            "0.16",
            "0.08",
            "--width",
            "32",
            "--height",
            "24",
            "--seed",
            "5",
            "--out-dir",
            str(out_dir),
            "--figure",
            str(figure),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["2x.npz", "4x.npz"]
    for acceleration, fraction in [(2, 0.16), (4, 0.08)]:
        expected, num_low = RandomMaskFunc([fraction], [acceleration])((24, 32, 2), seed=5)
        with np.load(out_dir / f"{acceleration}x.npz") as saved:
            np.testing.assert_array_equal(saved["mask"], columns_of(expected))
            assert int(saved["num_low_frequencies"]) == num_low
            assert float(saved["acceleration"]) == acceleration
            assert int(saved["seed"]) == 5
            assert float(saved["realised_acceleration"]) == pytest.approx(32 / columns_of(expected).sum())
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"


def test_make_masks_script_rejects_mismatched_lists(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import make_masks
    finally:
        sys.path.pop(0)
    with pytest.raises(SystemExit) as exit_info:
        make_masks.main(
            [
                "--mask-type",
                "random",
                "--accelerations",
                "2",
                "4",
                "--center-fractions",
                "0.16",
                "--width",
                "32",
                "--height",
                "8",
                "--seed",
                "0",
                "--out-dir",
                str(tmp_path / "m"),
                "--figure",
                str(tmp_path / "f.png"),
            ]
        )
    assert "--center-fractions" in str(exit_info.value.code)
    assert str(exit_info.value.code).startswith("error:")
    assert not (tmp_path / "m").exists()
