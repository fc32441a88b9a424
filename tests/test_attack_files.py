"""Attack files: the perturbations and their settings survive a round trip; bad files are named."""

import h5py
import numpy as np
import pytest
import torch

from smug.attacks import ATTACK_ATTRS, load_attack, save_attack

N = 16


def _attrs(**overrides):
    attrs = dict(
        eps=0.02,
        norm="linf",
        steps=10,
        step_size=None,
        seed=3,
        domain="kspace",
        relative=False,
        loss_target="gt",
        eot_samples=1,
        model="smug",
        fname=["file0.h5", "file1.h5"],
        slice=[4, 7],
    )
    return {**attrs, **overrides}


def test_save_load_round_trip(tmp_path):
    delta = torch.randn((2, 1, N, N), dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "attacks" / "a.h5"
    stronger = {**_attrs(), "eps": 2 * _attrs()["eps"]}
    save_attack(path, [(delta, _attrs()), (2 * delta, stronger)])
    (loaded, attrs), (loaded_2, attrs_2) = load_attack(path)
    assert torch.equal(loaded, delta) and torch.equal(loaded_2, 2 * delta)
    assert attrs == _attrs() and attrs_2 == stronger
    assert [p.name for p in path.parent.iterdir()] == ["a.h5"]  # no temporary left behind


def test_load_rejects_missing_and_corrupt_files(tmp_path):
    missing = tmp_path / "missing.h5"
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        load_attack(missing)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="garbage.h5"):
        load_attack(garbage)
    incomplete = tmp_path / "incomplete.h5"
    with h5py.File(incomplete, "w") as f:
        f.create_dataset("fname", data=["a"], dtype=h5py.string_dtype())
        f.create_dataset("slice", data=[0])
        f.create_group("level_0").create_dataset("perturbation", data=np.zeros((1, 4), np.complex64))
    with pytest.raises(ValueError, match="incomplete.h5"):
        load_attack(incomplete)


def test_save_rejects_incomplete_attributes(tmp_path):
    attrs = _attrs()
    del attrs["eps"]
    with pytest.raises(ValueError, match="eps"):
        save_attack(tmp_path / "a.h5", [(torch.zeros((2, 1, N, N), dtype=torch.complex64), attrs)])
    assert not (tmp_path / "a.h5").exists()
    assert "eps" in ATTACK_ATTRS
