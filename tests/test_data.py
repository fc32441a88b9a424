"""Slice selection, SMUG preprocessing and the slice dataset, on synthetic fastMRI-format files."""

import logging
import shutil

import h5py
import numpy as np
import pytest
import torch

from smug.mri import center_crop, center_crop_or_pad, create_mask_for_mask_type, ifft2c, save_mask
from smug.mri import sens_combine
from smug.data import central_slices, make_dataset, preprocess_slice, read_file_mask, read_slice
from smug.data import select_slices, sens_map_path, SliceDataset, volume_paths, volume_plan
from smug.data import write_synthetic_volume
from tests.fastmri_files import LAYOUTS, fill_padding_columns, write_layout


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    plan = volume_plan(3, {"train": 2, "val": 1, "test": 1}, ["knee"])
    out = {}
    for challenge in ("singlecoil", "multicoil"):
        paths = volume_paths(root, challenge, plan)
        for spec, path in zip(plan, paths):
            write_synthetic_volume(
                path,
                spec,
                challenge=challenge,
                num_slices=5,
                recon_size=(24, 20),
                kspace_size=(48, 20),
                num_coils=3,
                noise_level=0.0,
                sens_path=sens_map_path(root, spec.fname) if challenge == "multicoil" else None,
            )
        out[challenge] = [str(p) for p, spec in zip(paths, plan) if spec.split == "train"]
    out["sens_dir"] = sens_map_path(root, "x").parent
    return out


def test_central_slices():
    assert central_slices(10, 4) == [3, 4, 5, 6]
    assert central_slices(5, 1) == [2]
    assert central_slices(3, 8) == [0, 1, 2]


def test_select_slices_spreads_over_volumes_from_the_centre(volumes):
    refs = select_slices(volumes["singlecoil"], 3)
    assert [(r.fname, r.slice_idx) for r in refs] == [
        ("file1000001.h5", 1),
        ("file1000001.h5", 2),
        ("file1000002.h5", 2),
    ]
    assert len(select_slices(volumes["singlecoil"], None)) == 10


def test_preprocessing_normalises_and_recomputes_kspace_from_the_crop(volumes):
    refs = select_slices(volumes["multicoil"], 1)
    dataset = SliceDataset(refs, sens_dir=volumes["sens_dir"])
    item = dataset[0]
    assert item["kspace"].shape == (3, 24, 20) and item["target"].shape == (24, 20)
    assert item["target"].abs().max().item() == pytest.approx(1.0, abs=1e-6)
    # Noise-free synthetic data: the SENSE combination of the k-space's coil images is the target.
    combined = sens_combine(ifft2c(item["kspace"]), item["sens_maps"])
    torch.testing.assert_close(combined, item["target"], rtol=1e-4, atol=1e-5)


def test_fixed_mask_and_fastmri_mask_function(volumes):
    refs = select_slices(volumes["singlecoil"], 2)
    fixed = torch.zeros(20, dtype=torch.bool)
    fixed[8:12] = True
    item = SliceDataset(refs, mask=fixed)[0]
    assert torch.equal(item["mask"], fixed)
    assert item["kspace"][..., ~fixed].abs().max() == 0
    assert item["kspace"][..., fixed].abs().max() > 0

    func = create_mask_for_mask_type("random", [0.2], [2])
    dataset = SliceDataset(refs, mask=func)
    expected, _ = func((1, 20, 2), seed=tuple(map(ord, refs[0].fname)))
    assert torch.equal(dataset[0]["mask"], expected.reshape(-1).bool())


def test_bad_inputs_are_named(volumes, tmp_path):
    with pytest.raises(ValueError, match="sens_dir"):
        SliceDataset(select_slices(volumes["multicoil"], 1))
    narrow = tmp_path / "7.npz"
    save_mask(
        narrow,
        np.ones(7, bool),
        num_low_frequencies=2,
        acceleration=1,
        center_fraction=1,
        mask_type="equispaced",
        seed=0,
    )
    dataset = make_dataset(volumes["singlecoil"], 1, narrow, None)
    volume = select_slices(volumes["singlecoil"], 1)[0].path
    with pytest.raises(
        ValueError, match=f"^{narrow}: mask width 7 does not match the k-space width 20 of {volume}"
    ):
        dataset[0]
    bogus = tmp_path / "file9.h5"
    bogus.write_text("not hdf5")
    with pytest.raises(ValueError, match="file9.h5"):
        select_slices([bogus], 1)
    with pytest.raises(ValueError, match="needs sensitivity maps"):
        preprocess_slice(np.ones((2, 8, 8), np.complex64), (8, 8))


# Real fastMRI layouts: padding columns, narrow FLAIR images, brain names, test files.


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    sens_dir = root / "sens_maps"
    kinds = ("singlecoil_knee", "multicoil_knee", "multicoil_brain", "flair_narrow", "multicoil_knee_test")
    paths = {kind: write_layout(root / "volumes", kind, sens_dir=sens_dir) for kind in kinds}
    paths["singlecoil_knee_test"] = write_layout(root / "volumes", "singlecoil_knee_test")
    return {"sens_dir": sens_dir, **paths}


@pytest.mark.parametrize("kind", ["singlecoil_knee", "multicoil_knee"])
def test_padding_columns_are_zeroed_before_preprocessing(layouts, tmp_path, kind):
    clean = layouts[kind]
    corrupt = tmp_path / clean.name
    shutil.copy(clean, corrupt)
    left, right = fill_padding_columns(corrupt)
    assert (left, right) == LAYOUTS[kind]["padding"]
    raw_kspace, _ = read_slice(corrupt, 1)
    assert np.abs(raw_kspace[..., :left]).min() > 100  # the garbage is really in the file
    sens_dir = layouts["sens_dir"] if kind.startswith("multicoil") else None
    clean_item = SliceDataset(select_slices([clean], 1), sens_dir=sens_dir)[0]
    corrupt_item = SliceDataset(select_slices([corrupt], 1), sens_dir=sens_dir)[0]
    for key in ("kspace", "target", "scale"):
        torch.testing.assert_close(corrupt_item[key], clean_item[key])
    # Without the padding bounds, the garbage would dominate the image.
    unpadded = preprocess_slice(raw_kspace, (16, 16), None if sens_dir is None else clean_item["sens_maps"])
    assert not torch.allclose(unpadded["target"], clean_item["target"], atol=1e-2)
    padded = preprocess_slice(raw_kspace, (16, 16), unpadded.get("sens_maps"), padding=(left, right))
    torch.testing.assert_close(padded["target"], clean_item["target"])


def test_flair_narrow_volume_is_padded_to_the_recon_size(layouts, caplog):
    fixed = torch.zeros(16, dtype=torch.bool)
    fixed[5:11] = True
    with caplog.at_level(logging.INFO, logger="smug.data.datasets"):
        dataset = SliceDataset(
            select_slices([layouts["multicoil_brain"], layouts["flair_narrow"]], 2),
            mask=fixed,
            sens_dir=layouts["sens_dir"],
        )
    assert (
        "file_brain_AXFLAIR_203_6002002.h5: image (32, 12) is smaller than the recon size (16, 16)"
        in caplog.text
    )
    assert "AXT2" not in caplog.text
    names = [dataset.refs[i].fname for i in range(len(dataset))]
    assert names == ["file_brain_AXFLAIR_203_6002002.h5", "file_brain_AXT2_200_6002001.h5"]
    flair, brain = dataset[0], dataset[1]
    for item in (flair, brain):
        assert item["kspace"].shape == (4, 16, 16) and item["target"].shape == (16, 16)
        assert torch.equal(item["mask"], fixed)
        assert item["target"].abs().max().item() == pytest.approx(1.0, abs=1e-6)
    # 12 image columns padded to 16: two zero columns each side, the object kept in between.
    assert flair["target"][:, :2].abs().max() == 0 and flair["target"][:, 14:].abs().max() == 0
    assert flair["target"][:, 2:14].abs().max() == 1
    full = dataset._load(0)
    combined = sens_combine(ifft2c(full["kspace"]), full["sens_maps"])
    torch.testing.assert_close(combined, full["target"], rtol=1e-4, atol=1e-5)


def test_test_file_needs_allow_no_target(layouts):
    path = layouts["multicoil_knee_test"]
    with pytest.raises(ValueError, match="file1000004.h5: test files have no ground truth.*_val split"):
        SliceDataset(select_slices([path], 1), sens_dir=layouts["sens_dir"])


@pytest.mark.parametrize("kind", ["multicoil_knee_test", "singlecoil_knee_test"])
def test_allow_no_target_uses_the_stored_mask(layouts, kind):
    path = layouts[kind]
    stored = torch.from_numpy(read_file_mask(path))
    spec = LAYOUTS[kind]
    left, right = spec["padding"]
    coils = spec["num_coils"]
    sens_dir = layouts["sens_dir"] if kind.startswith("multicoil") else None
    # A dataset mask is for files with a target; a test file's own mask wins.
    dataset = SliceDataset(
        select_slices([path], None),
        mask=torch.ones(16, dtype=torch.bool),
        sens_dir=sens_dir,
        allow_no_target=True,
    )
    assert len(dataset) == 2
    item = dataset[1]
    assert "target" not in item and item["fname"] == path.name and item["slice"] == 1
    assert item["kspace"].shape == (coils, 32, 24)  # the stored grid
    assert torch.equal(item["mask"], stored) and not stored[:left].any() and not stored[right:].any()
    assert item["kspace"][..., ~stored].abs().max() == 0 and item["kspace"][..., stored].abs().min() > 0
    raw, _ = read_slice(path, 1)
    torch.testing.assert_close(item["kspace"] * item["scale"], torch.from_numpy(raw))
    if sens_dir is not None:
        assert item["sens_maps"].shape == (coils, 32, 24)
    else:
        assert "sens_maps" not in item
    # Without sensitivity maps a multicoil test file still loads (maps are optional there).
    assert (
        "sens_maps"
        not in SliceDataset(select_slices([layouts["multicoil_knee_test"]], 1), allow_no_target=True)[0]
    )


def test_target_less_file_without_stored_mask_is_named(layouts, tmp_path):
    path = tmp_path / "file1000009.h5"
    shutil.copy(layouts["singlecoil_knee_test"], path)
    with h5py.File(path, "r+") as hf:
        del hf["mask"]
    with pytest.raises(ValueError, match="file1000009.h5: no ground truth and no stored 'mask'"):
        SliceDataset(select_slices([path], 1), allow_no_target=True)


def test_select_slices_mixes_knee_and_brain(layouts, tmp_path):
    deep_brain = write_layout(
        tmp_path, "multicoil_brain", fname="file_brain_AXT1_202_6002002.h5", num_slices=6
    )
    shallow = [
        shutil.copy(layouts[kind], tmp_path) for kind in ("multicoil_knee", "singlecoil_knee", "flair_narrow")
    ]
    paths = [shallow[0], deep_brain, shallow[1], shallow[2]]
    refs = select_slices(paths, 11)
    # Sorted by path, dealt one per volume in turn; 3-slice volumes fill up, the deep brain takes the rest.
    assert [(r.fname, r.slice_idx) for r in refs] == [
        ("file1000001.h5", 0),
        ("file1000001.h5", 1),
        ("file1000001.h5", 2),
        ("file1000002.h5", 0),
        ("file1000002.h5", 1),
        ("file1000002.h5", 2),
        ("file_brain_AXFLAIR_203_6002002.h5", 0),
        ("file_brain_AXFLAIR_203_6002002.h5", 1),
        ("file_brain_AXFLAIR_203_6002002.h5", 2),
        ("file_brain_AXT1_202_6002002.h5", 2),
        ("file_brain_AXT1_202_6002002.h5", 3),
    ]
    assert [(r.fname, r.slice_idx) for r in select_slices(paths, 4)] == [
        ("file1000001.h5", 1),
        ("file1000002.h5", 1),
        ("file_brain_AXFLAIR_203_6002002.h5", 1),
        ("file_brain_AXT1_202_6002002.h5", 2),
    ]


def test_center_crop_or_pad_round_trip():
    x = torch.randn(2, 5, 7, dtype=torch.complex64)
    padded = center_crop_or_pad(x, (4, 10))
    assert padded.shape == (2, 4, 10)
    assert padded[..., :1].abs().max() == 0 and padded[..., 8:].abs().max() == 0
    torch.testing.assert_close(center_crop(padded, (4, 7)), center_crop(x, (4, 7)))
    as_numpy = center_crop_or_pad(x.numpy(), (7, 3))
    assert isinstance(as_numpy, np.ndarray) and as_numpy.shape == (2, 7, 3) and as_numpy[:, 0].sum() == 0
    with pytest.raises(ValueError, match=r"to \(0, 3\)"):
        center_crop_or_pad(x, (0, 3))
