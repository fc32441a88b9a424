"""A retrained model never resumes a checkpoint of another run (issue 28, case 1).

Before: checkpoints survived a finished run and were keyed by the spec alone, so a model retrained
because its starting weights, data or mask had changed "resumed" the old run at its last epoch and
wrote the old weights under the new provenance.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import h5py
import pytest
import torch
import yaml

from smug.data import make_dataset
from smug.training import SINGLE, Ranks, checkpoint_identity, train_stage
from smug.utils import file_digest
from smug.study import spec_settings
from tests.workflow_utils import REPO, TINY_CONFIG, deep_update


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Singlecoil synthetic volumes, two masks and the specs of a denoiser and a MoDL."""
    root = tmp_path_factory.mktemp("stale")
    python = [sys.executable]
    data = root / "data"
    subprocess.run(
        [*python, REPO / "scripts/make_synthetic.py", "--root", data, "--challenge", "singlecoil",
         "--anatomies", "knee", "--volumes", "train=2", "val=1", "test=1", "--slices", "2",
         "--recon-size", "16", "16", "--kspace-size", "32", "16"],
        check=True, cwd=root, capture_output=True,
    )  # fmt: skip
    for seed in (0, 1):
        subprocess.run(
            [*python, REPO / "scripts/make_masks.py", "--mask-type", "random", "--accelerations", "4",
             "--center-fractions", "0.08", "--width", "16", "--height", "32", "--seed", str(seed),
             "--out-dir", root / f"masks{seed}", "--figure", root / f"masks{seed}.png"],
            check=True, cwd=root, capture_output=True,
        )  # fmt: skip
    config = deep_update(yaml.safe_load((REPO / "config/config.yaml").read_text()), TINY_CONFIG)
    data_spec = {"challenge": "singlecoil", "train_slices": None, "val_slices": 2}

    def spec(method: str, epochs: int, **training) -> dict:
        settings = spec_settings(method, config)
        settings["training"].update(epochs=epochs, **training)
        return {"name": method, "kind": method, "seed": 0, **settings, "data": data_spec}

    volumes = {
        split: sorted(str(p) for p in (data / f"singlecoil_{split}").glob("*.h5"))
        for split in ("train", "val")
    }
    return {
        "root": root,
        "spec": spec,
        "volumes": volumes,
        "masks": [root / f"masks{s}" / "4x.npz" for s in (0, 1)],
    }


def _train(tiny, spec, out, checkpoint, mask=None, init=None, on_epoch_end=None):
    mask = tiny["masks"][0] if mask is None else mask
    torch.set_num_threads(1)
    train_stage(
        spec,
        tiny["volumes"]["train"],
        tiny["volumes"]["val"],
        str(mask),
        out / "model.pt",
        out / "metrics.csv",
        checkpoint,
        torch.device("cpu"),
        init_path=None if init is None else str(init),
        on_epoch_end=on_epoch_end,
    )
    return torch.load(out / "model.pt", weights_only=True)


def _same(a, b):
    return all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


@pytest.fixture(scope="module")
def denoisers(tiny):
    """Two starting points for MoDL: denoisers pre-trained at two noise levels."""
    root = tiny["root"]
    paths = []
    for sigma in (0.1, 0.05):
        out = root / f"denoiser{sigma}"
        _train(
            tiny, tiny["spec"]("denoiser", 1, pretrain_sigma=sigma), out, root / f"ckpt-denoiser{sigma}.pt"
        )
        paths.append(out / "model.pt")
    return paths


def test_finished_training_leaves_no_checkpoint_and_a_retraining_with_new_weights_starts_over(
    tiny, denoisers, tmp_path
):
    spec = tiny["spec"]("modl", 2)
    checkpoint = tmp_path / "modl.pt"
    first = _train(tiny, spec, tmp_path / "first", checkpoint, init=denoisers[0])
    assert not checkpoint.exists(), "a finished run kept its checkpoint"
    assert first["inputs"]["starting weights"] == file_digest(denoisers[0])
    # The denoiser MoDL starts from was retrained: the same MoDL spec must train anew.
    retrained = _train(tiny, spec, tmp_path / "retrained", checkpoint, init=denoisers[1])
    fresh = _train(tiny, spec, tmp_path / "fresh", tmp_path / "fresh.pt", init=denoisers[1])
    assert _same(retrained, fresh)
    assert not _same(retrained, first)


@pytest.mark.parametrize("changed", ["starting weights", "mask"])
def test_a_killed_run_is_not_resumed_with_other_inputs(tiny, denoisers, tmp_path, caplog, changed):
    """A run killed after its first epoch, then re-run after an input changed: it starts over and
    ends with the weights of a run that never had a checkpoint; the log names what changed."""
    spec = tiny["spec"]("modl", 2)
    checkpoint = tmp_path / "modl.pt"

    def kill_after_one(epoch):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        _train(tiny, spec, tmp_path / "killed", checkpoint, init=denoisers[0], on_epoch_end=kill_after_one)
    assert checkpoint.exists()
    inputs = {"init": denoisers[1]} if changed == "starting weights" else {"mask": tiny["masks"][1]}
    with caplog.at_level(logging.WARNING):
        rerun = _train(tiny, spec, tmp_path / "rerun", checkpoint, **{"init": denoisers[0], **inputs})
    fresh = _train(tiny, spec, tmp_path / "fresh", tmp_path / "fresh.pt", **{"init": denoisers[0], **inputs})
    assert _same(rerun, fresh)
    assert f"checkpoint {checkpoint} was written by another run (its {changed} differ" in caplog.text
    assert [row["epoch"] for row in rerun["history"]] == [1, 2]


def test_the_same_run_still_resumes(tiny, denoisers, tmp_path):
    spec = tiny["spec"]("modl", 2)
    checkpoint = tmp_path / "modl.pt"
    seen = []

    def kill_after_one(epoch):
        seen.append(epoch)
        if epoch == 1 and len(seen) == 1:
            raise Killed

    with pytest.raises(Killed):
        _train(tiny, spec, tmp_path / "resumed", checkpoint, init=denoisers[0], on_epoch_end=kill_after_one)
    resumed = _train(
        tiny, spec, tmp_path / "resumed", checkpoint, init=denoisers[0], on_epoch_end=kill_after_one
    )
    assert seen == [1, 2], "the re-run did not resume after the first epoch"
    fresh = _train(tiny, spec, tmp_path / "fresh", tmp_path / "fresh.pt", init=denoisers[0])
    assert _same(resumed, fresh)


def test_identity_changes_with_every_input(tiny, denoisers, tmp_path):
    spec = tiny["spec"]("modl", 2)
    train, val = tiny["volumes"]["train"], tiny["volumes"]["val"]
    mask = tiny["masks"][0]

    def identity(spec=spec, train=train, mask=mask, init=denoisers[0], ranks=SINGLE):
        return checkpoint_identity(
            spec, make_dataset(train, None, mask, None), make_dataset(val, 2, mask, None), mask, init, ranks
        )

    base = identity()
    changed = {
        "spec": identity(spec={**spec, "seed": 1}),
        "starting weights": identity(init=denoisers[1]),
        "mask": identity(mask=tiny["masks"][1]),
        "training data": identity(train=train[:1]),
        "ranks": identity(ranks=Ranks(0, 2)),
    }
    for part, other in changed.items():
        assert [key for key in base if base[key] != other[key]] == [part]
    # Rewriting a volume with other content changes the data's digest.
    copy = tmp_path / "copy.h5"
    copy.write_bytes(open(train[1], "rb").read())
    before = identity(train=[train[0], copy])["training data"]
    with h5py.File(copy, "r+") as handle:
        handle["kspace"][0, 0, 0] += 1
    assert identity(train=[train[0], copy])["training data"] != before
