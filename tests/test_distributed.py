"""Data-parallel training (smug.training.distributed): two gloo ranks on CPU with batch b end with the weights
of one process with batch 2b, and a killed two-rank run resumes to the uninterrupted weights."""

import functools
import json
import multiprocessing
import os
import socket

import pytest
import torch

from smug.training import distributed, Ranks, ShardSampler, shard, end_to_end_loss, TrainSettings, fit
from smug.models import build_model
from tests.conftest import TinySlices

# DIDN, the default denoiser, has no batch normalisation: its step depends on the union batch only.
# (Batch-norm statistics, as in DnCNN, are each rank's own, as with DistributedDataParallel.)
MODEL_CFG = dict(
    denoiser="didn",
    denoiser_args=dict(num_chans=4, num_dubs=1),
    num_unrolls=2,
    lam=0.5,
    learn_lam=True,
    lam_floor=0.01,
    cg_max_iter=5,
    cg_tol=1e-6,
)


def _train(checkpoint, batch_size, ranks=distributed.SINGLE, on_epoch_end=None):
    torch.set_num_threads(1)  # the same reduction order in every process
    torch.manual_seed(0)
    model = build_model("modl", MODEL_CFG)
    data = TinySlices(n=8)

    def validate(m):
        with torch.no_grad():
            out = data.reconstruct(m)
        return {"score": -float((out - data.targets).abs().pow(2).mean())}

    settings = TrainSettings(
        epochs=3, batch_size=batch_size, lr=1e-3, constant_epochs=1, grad_clip=1.0, seed=3
    )
    loss = functools.partial(end_to_end_loss, loss_name="mse")
    fit(
        model,
        loss,
        data,
        validate,
        settings,
        torch.device("cpu"),
        checkpoint,
        {"run": "data-parallel"},
        on_epoch_end=on_epoch_end,
        ranks=ranks,
    )
    return model


class Killed(Exception):
    pass


def _rank(rank, world_size, port, checkpoint, out, kill_after):
    """One gloo rank of a two-process run (torchrun's environment, set by hand)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size)
    )
    ranks = distributed.ranks_from_environment()
    distributed.start(ranks, torch.device("cpu"))

    def kill(epoch):
        if epoch == kill_after:
            raise Killed

    try:
        model = _train(checkpoint, batch_size=2, ranks=ranks, on_epoch_end=kill if kill_after else None)
        if ranks.main:
            torch.save(model.state_dict(), out)
    except Killed:
        pass
    finally:
        distributed.stop(ranks)


def _two_ranks(tmp_path, name, kill_after=0):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    out = tmp_path / f"{name}.pt"
    args = (2, port, tmp_path / f"{name}.ckpt", out, kill_after)
    procs = [context.Process(target=_rank, args=(rank, *args)) for rank in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    return out


def test_shards_split_every_batch_and_one_process_keeps_the_plain_shuffle():
    order = list(range(10))
    assert shard(order, Ranks(0, 2)) == [0, 2, 4, 6, 8] and shard(order, Ranks(1, 2)) == [1, 3, 5, 7, 9]
    assert shard(order, Ranks(2, 3)) == [2, 5, 8]  # 9 of 10: every rank takes three steps' worth
    data = list(range(10))
    plain = torch.utils.data.DataLoader(
        data, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(4)
    )
    gen = torch.Generator().manual_seed(4)
    ours = torch.utils.data.DataLoader(data, batch_size=3, sampler=ShardSampler(10, gen), generator=gen)
    assert [b.tolist() for b in plain] == [b.tolist() for b in ours]


def test_two_ranks_of_batch_b_equal_one_process_of_batch_2b(tmp_path):
    """Equal within float tolerance: the averaged gradients differ from the single batch's in the
    order of summation only, and Adam's normalised steps (lr 1e-3) turn that into weight differences
    below 1e-4 after six steps, where one process with batch b instead moves them by 1e-2."""
    single = _train(tmp_path / "single.ckpt", batch_size=4).state_dict()
    two = torch.load(_two_ranks(tmp_path, "two"), weights_only=True)
    for key in single:
        torch.testing.assert_close(two[key], single[key], rtol=0, atol=2e-4, msg=key)
    # The check can fail: the same steps with batch b (no second rank) end far outside it.
    other = _train(tmp_path / "other.ckpt", batch_size=2).state_dict()
    assert max(float((other[k] - single[k]).abs().max()) for k in single) > 10 * 2e-4


def test_killed_two_rank_run_resumes_to_the_uninterrupted_weights(tmp_path):
    full = torch.load(_two_ranks(tmp_path, "full"), weights_only=True)
    killed = _two_ranks(tmp_path, "killed", kill_after=1)
    assert not killed.exists() and (tmp_path / "killed.ckpt").exists()
    resumed = torch.load(_two_ranks(tmp_path, "killed"), weights_only=True)
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_min_max_training_is_refused_on_several_ranks():
    from smug.training import train_stage

    spec = {"name": "unet_adv", "kind": "unet_adv"}
    with pytest.raises(ValueError, match="train it on one GPU"):
        train_stage(spec, [], [], "", "", "", "", torch.device("cpu"), ranks=Ranks(0, 2))


def test_train_script_starts_its_ranks_with_torchrun(tmp_path):
    """scripts/train.py --ranks 2 on CPU: torchrun starts two gloo ranks, and rank 0 alone writes
    one model (recording its two ranks), its metrics and the checkpoint."""
    import subprocess
    import sys

    import yaml

    from smug.study import spec_settings
    from tests.workflow_utils import REPO, TINY_CONFIG, deep_update

    python = [sys.executable]
    data = tmp_path / "data"
    subprocess.run(
        [
            *python,
            REPO / "scripts/make_synthetic.py",
            "--root",
            data,
            "--challenge",
            "singlecoil",
            "--anatomies",
            "knee",
            "--volumes",
            "train=2",
            "val=1",
            "test=1",
            "--slices",
            "2",
            "--recon-size",
            "16",
            "16",
            "--kspace-size",
            "32",
            "16",
        ],
        check=True,
        cwd=tmp_path,
    )
    subprocess.run(
        [
            *python,
            REPO / "scripts/make_masks.py",
            "--mask-type",
            "random",
            "--accelerations",
            "4",
            "--center-fractions",
            "0.08",
            "--width",
            "16",
            "--height",
            "32",
            "--seed",
            "0",
            "--out-dir",
            tmp_path,
            "--figure",
            tmp_path / "masks.png",
        ],
        check=True,
        cwd=tmp_path,
    )
    config = deep_update(yaml.safe_load((REPO / "config/config.yaml").read_text()), TINY_CONFIG)
    config["model"]["denoiser"] = "didn"
    config["model"]["didn"] = {"num_chans": 4, "num_dubs": 1, "global_residual": True}
    spec = {
        "name": "denoiser",
        "kind": "denoiser",
        "seed": 0,
        **spec_settings("denoiser", config),
        "data": {"challenge": "singlecoil", "train_slices": None, "val_slices": 2},
    }
    spec["training"]["epochs"] = 1
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    volumes = lambda split: sorted(str(p) for p in (data / f"singlecoil_{split}").glob("*.h5"))  # noqa: E731
    out = tmp_path / "out"
    result = subprocess.run(
        [
            *python,
            REPO / "scripts/train.py",
            "--spec",
            tmp_path / "spec.json",
            "--train",
            *volumes("train"),
            "--val",
            *volumes("val"),
            "--mask",
            tmp_path / "4x.npz",
            "--model",
            out / "model.pt",
            "--metrics",
            out / "metrics.csv",
            "--checkpoint",
            out / "checkpoint.pt",
            "--ranks",
            "2",
            "--device",
            "cpu",
            "--threads",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = torch.load(out / "model.pt", weights_only=True)
    assert record["ranks"] == 2 and record["optimizer_steps"] > 0
    assert (out / "metrics.csv").exists()
    assert not (out / "checkpoint.pt").exists(), "a finished training leaves no checkpoint to resume"
