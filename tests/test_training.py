"""The shared training loop: determinism, resume equivalence, best-epoch selection, NaN guard."""

import functools
import multiprocessing
import os
import signal

import pytest
import torch

from smug.data import collate
from smug.models import build_model
from smug.training import end_to_end_loss, unrolled_stability_loss, NonFiniteLossError, TrainSettings, fit
from tests.conftest import TinySlices

MODEL_CFG = dict(
    denoiser="dncnn",
    denoiser_args=dict(num_chans=4, num_layers=3),
    num_unrolls=2,
    lam=1.0,
    learn_lam=False,
    cg_max_iter=5,
    cg_tol=1e-6,
)
SMOOTHING_CFG = dict(sigma=0.02, num_samples=2, kspace_sigma=0.01)
IDENTITY = {"run": "tiny"}


def _train(tmp_path, name, kind="smug", epochs=3, on_epoch_end=None, lr=1e-3):
    torch.manual_seed(0)
    model = build_model(kind, MODEL_CFG, SMOOTHING_CFG)
    data = TinySlices()
    loss = unrolled_stability_loss if kind == "smug" else functools.partial(end_to_end_loss, loss_name="mse")

    def validate(m):
        with torch.no_grad():
            out = data.reconstruct(m)
        return {"score": -float((out - data.targets).abs().pow(2).mean())}

    settings = TrainSettings(epochs=epochs, batch_size=2, lr=lr, constant_epochs=1, grad_clip=1.0, seed=3)
    result = fit(
        model,
        loss,
        data,
        validate,
        settings,
        torch.device("cpu"),
        tmp_path / f"{name}.ckpt",
        IDENTITY,
        on_epoch_end=on_epoch_end,
    )
    return model, result


def _same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_training_is_deterministic_and_learns(tmp_path):
    model_a, result_a = _train(tmp_path, "a")
    model_b, result_b = _train(tmp_path, "b")
    assert _same_weights(model_a.state_dict(), model_b.state_dict())
    assert [r["train_loss"] for r in result_a.history] == [r["train_loss"] for r in result_b.history]
    assert result_a.history[-1]["train_loss"] < result_a.history[0]["train_loss"]
    best = max(result_a.history, key=lambda r: r["score"])
    assert result_a.best_epoch == best["epoch"]


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path):
    full_model, full = _train(tmp_path, "full")

    class Killed(Exception):
        pass

    def kill_after_two(epoch):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        _train(tmp_path, "resumed", on_epoch_end=kill_after_two)
    resumed_model, resumed = _train(tmp_path, "resumed")
    assert len(resumed.history) == 3
    assert _same_weights(full_model.state_dict(), resumed_model.state_dict())
    assert _same_weights(full.best_state, resumed.best_state)


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    model = build_model("modl", MODEL_CFG, SMOOTHING_CFG)
    data = TinySlices()
    data.kspace[0] = float("nan")
    settings = TrainSettings(epochs=1, batch_size=6)
    loss = functools.partial(end_to_end_loss, loss_name="mse")
    # Non-finite data is named as the culprit, not the learning rate.
    with pytest.raises(
        NonFiniteLossError, match="epoch 1, step 1; no model was written: the input data of f0 slice 0 is not"
    ):
        fit(
            model,
            loss,
            data,
            lambda m: {"score": 0.0},
            settings,
            torch.device("cpu"),
            tmp_path / "x.ckpt",
            IDENTITY,
        )
    data.kspace[0] = 0.0

    def diverging(model, batch, generator):
        return end_to_end_loss(model, batch, generator, loss_name="mse") * float("inf")

    with pytest.raises(
        NonFiniteLossError, match="data is finite, so the training diverged: lower training.lr"
    ):
        fit(
            model,
            diverging,
            data,
            lambda m: {"score": 0.0},
            settings,
            torch.device("cpu"),
            tmp_path / "y.ckpt",
            IDENTITY,
        )


def _train_until_sigkill(tmp_path):
    torch.set_num_threads(1)

    def sigkill_after_two(epoch):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    _train(tmp_path, "killed", on_epoch_end=sigkill_after_two)


def test_sigkilled_process_resumes_to_the_uninterrupted_weights(tmp_path):
    """A real SIGKILL (no exception handler, no atomic-write cleanup runs), then a fresh process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the child: bit-equality needs the same reduction order
    try:
        full_model, _ = _train(tmp_path, "full")
    finally:
        torch.set_num_threads(threads)
    # spawn, not fork: a forked child can deadlock on the parent's OpenMP thread pool.
    child = multiprocessing.get_context("spawn").Process(target=_train_until_sigkill, args=(tmp_path,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    assert not list(tmp_path.glob(".*.part")), "a killed run left a partial checkpoint"
    torch.set_num_threads(1)
    try:
        resumed_model, resumed = _train(tmp_path, "killed")
    finally:
        torch.set_num_threads(threads)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert _same_weights(full_model.state_dict(), resumed_model.state_dict())


def test_stability_target_decides_whether_the_clean_denoising_gets_a_gradient():
    """`denoised_gt` holds D(x_gt) fixed; `denoised_gt_grad` (journal code) differentiates it too, so
    the two give the same loss but different gradients; `gt` compares with x_gt itself."""
    data = TinySlices()
    batch = collate([data[i] for i in range(2)])
    torch.manual_seed(0)
    model = build_model("smug", MODEL_CFG, SMOOTHING_CFG)
    losses, grads = {}, {}
    for name in ("gt", "denoised_gt", "denoised_gt_grad"):
        model.zero_grad()
        loss = unrolled_stability_loss(model, batch, torch.Generator().manual_seed(1), target=name)
        loss.backward()
        losses[name] = float(loss.detach())
        grads[name] = torch.cat([p.grad.flatten() for p in model.denoiser.parameters()])
    assert losses["denoised_gt"] == pytest.approx(losses["denoised_gt_grad"], rel=1e-6)
    assert losses["gt"] != pytest.approx(losses["denoised_gt"], rel=1e-3)
    assert not torch.allclose(grads["denoised_gt"], grads["denoised_gt_grad"])
    with pytest.raises(ValueError, match="stability target"):
        unrolled_stability_loss(model, batch, None, target="x_gt")
