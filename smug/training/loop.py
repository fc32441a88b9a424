"""The training loop every model and baseline shares.

Per epoch: shuffled mini-batches, a loss, an optimiser step (with optional gradient clipping),
validation, a CSV-ready history row, and a checkpoint. Every epoch's randomness (shuffling,
smoothing noise, dropout) is seeded from ``(seed, epoch)``, and checkpoints hold the model,
optimiser, scheduler and RNG states, so a run killed at any point and re-run continues from its
last finished epoch and ends with exactly the weights of an uninterrupted run (on CPU).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from smug.training import distributed
from smug.data import Batch, collate
from smug.training.distributed import SINGLE, Ranks
from smug.utils import atomic_path, epoch_seed, load_torch_file
from smug.training.accelerator import (
    PerformanceOptions,
    configure_backends,
    network_autocast,
    to_channels_last,
)

LOG = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Batch, torch.Generator], torch.Tensor]
ValidateFn = Callable[[nn.Module], dict[str, float]]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops without writing a model."""


@dataclass
class TrainSettings:
    """Optimisation settings (config section ``training``)."""

    epochs: int
    batch_size: int = 1
    optimizer: str = "adam"
    lr: float = 1e-4
    betas: Sequence[float] = (0.5, 0.999)
    weight_decay: float = 0.0
    schedule: str = "constant_linear"
    constant_epochs: int = 0
    step_size: int = 40
    gamma: float = 0.1
    grad_clip: float | None = None
    seed: int = 0
    num_workers: int = 0
    # Speed options (see smug.training.accelerator); all off reproduces the plain float32 run exactly.
    amp: str = "off"
    channels_last: bool = False
    cudnn_benchmark: bool = False
    pin_memory: bool = False

    @property
    def performance(self) -> PerformanceOptions:
        return PerformanceOptions(
            amp=self.amp,
            channels_last=self.channels_last,
            cudnn_benchmark=self.cudnn_benchmark,
            pin_memory=self.pin_memory,
        )


@dataclass
class FitResult:
    """What :func:`fit` returns: the best weights on validation and the per-epoch history."""

    best_state: dict
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


def make_optimizer(params, settings: TrainSettings) -> torch.optim.Optimizer:
    name = settings.optimizer.lower()
    if name == "adam":
        return torch.optim.Adam(
            params, lr=settings.lr, betas=tuple(settings.betas), weight_decay=settings.weight_decay
        )
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=settings.lr, betas=tuple(settings.betas), weight_decay=settings.weight_decay
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=settings.lr, weight_decay=settings.weight_decay)
    raise ValueError(f"unknown optimizer {settings.optimizer!r}; valid: adam, adamw, rmsprop")


def make_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings):
    """``constant_linear``: constant for ``constant_epochs``, then linear decay to 0 at the last epoch
    (the SMUG code); ``step``: multiply by ``gamma`` every ``step_size`` epochs (fastMRI U-Net);
    ``constant``."""
    if settings.schedule == "constant_linear":
        hold = settings.constant_epochs
        decay = max(settings.epochs - hold, 1)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: 1.0 if epoch < hold else max(0.0, 1.0 - (epoch - hold) / decay)
        )
    if settings.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, settings.step_size, settings.gamma)
    if settings.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    raise ValueError(f"unknown schedule {settings.schedule!r}; valid: constant_linear, step, constant")


def _rng_state() -> dict:
    """The global generators' states as tensors and plain numbers, which the safe loader reads."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path, identity: Mapping[str, str], device: torch.device) -> dict | None:
    """The checkpoint of this very run, or None (absent, unreadable, or written by another run).

    Read with ``weights_only=True`` (tensors, numbers, strings and containers only): a checkpoint
    that needs anything else, such as a crafted pickle, is refused unopened and training starts over.
    A checkpoint is resumed only when its identity (:func:`smug.training.stages.checkpoint_identity`: the
    spec with its seed, the starting weights, the data, the mask, the number of ranks) equals this
    run's in every part; otherwise the parts that differ are logged and training starts over.
    """
    if not path.exists():
        return None
    try:
        state = load_torch_file(path, device, what="checkpoint")
    except ValueError as exc:  # a checkpoint cut short by a kill, or an unsafe one, is not worth dying for
        LOG.warning("%s; starting from scratch", exc)
        return None
    written_by = state.get("identity") if isinstance(state, dict) else None
    if not isinstance(written_by, dict):
        LOG.warning("checkpoint %s was written by an unidentified run; starting from scratch", path)
        return None
    if written_by != dict(identity):
        changed = [part for part in {**identity, **written_by} if written_by.get(part) != identity.get(part)]
        LOG.warning(
            "checkpoint %s was written by another run (its %s differ from this run's); starting from scratch",
            path,
            ", ".join(changed),
        )
        return None
    return state


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train_set: Dataset,
    validate: ValidateFn,
    settings: TrainSettings,
    device: torch.device,
    checkpoint_path: str | os.PathLike,
    identity: Mapping[str, str],
    trainable: Sequence[nn.Parameter] | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
    ranks: Ranks = SINGLE,
) -> FitResult:
    """Train ``model`` and keep the weights with the best validation score.

    Args:
        model: the network (already on ``device``, initialised).
        loss_fn: ``(model, batch, generator) -> scalar loss``. A stateful objective (the min-max
            game's generator) exposes ``state_dict``/``load_state_dict`` and is checkpointed too.
        train_set: items as :class:`smug.data.datasets.SliceDataset` gives them.
        validate: ``model -> {"score": higher is better, ...}`` (run in eval mode, no grad); every
            entry becomes a column of the epoch's history row.
        settings: optimisation settings, with the speed options of :mod:`smug.training.accelerator`: bf16
            autocast confined to the model's convolutional networks during the training steps
            (validation stays float32), channels-last weights (converted in place), cuDNN autotuning
            and pinned batches on CUDA.
        device: where to train.
        checkpoint_path: where the resumable state goes after every epoch (not a pipeline output).
        identity: what determines this run's weights, part by part (digests); a checkpoint is
            resumed only if it was written with the same identity.
        trainable: parameters to optimise (default: all of ``model``'s).
        on_epoch_end: called with the epoch number after its checkpoint is written (tests use it to
            simulate a kill).
        ranks: this process's place among data-parallel processes (:mod:`smug.training.distributed`): each
            takes its share of every epoch's order with ``settings.batch_size`` slices per step,
            gradients are averaged over the ranks, and rank 0 alone validates and writes the
            checkpoint. Without it, one process.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite.
    """
    checkpoint_path = Path(checkpoint_path)
    performance = settings.performance
    configure_backends(performance, device)
    if performance.channels_last:
        to_channels_last(model)
    distributed.broadcast_parameters(model, ranks)
    params = list(model.parameters()) if trainable is None else list(trainable)
    optimizer = make_optimizer(params, settings)
    scheduler = make_scheduler(optimizer, settings)
    progress = _resume(checkpoint_path, identity, device, model, optimizer, scheduler, loss_fn, settings)
    for epoch in range(progress.next_epoch, settings.epochs):
        tic = time.perf_counter()
        loader, noise = _epoch_loader(train_set, settings, epoch, device, ranks)
        total, count, steps = _train_epoch(
            model, loss_fn, loader, noise, optimizer, params, settings, device, epoch, ranks
        )
        progress.steps += steps
        total, count = distributed.sum_over_ranks(torch.tensor([total, float(count)]), ranks).tolist()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        if ranks.main:
            _validate_epoch(model, validate, progress, epoch, total / max(count, 1), lr, tic, settings)
            state = (model, optimizer, scheduler, loss_fn)
            save_checkpoint(checkpoint_path, _checkpoint(identity, epoch, state, progress, settings))
        # The other ranks wait for rank 0's checkpoint, so a kill after any epoch resumes them all.
        distributed.barrier(ranks)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    best = progress.best
    return FitResult(
        best["state"], best["epoch"], best["score"], progress.history, progress.seconds, progress.steps
    )


def _checkpoint(
    identity: Mapping[str, str], epoch: int, state: tuple, progress: _Progress, settings: TrainSettings
) -> dict:
    """Everything a killed run resumes from after ``epoch``: ``state`` is the model, optimiser,
    scheduler and objective (whose state is saved if it has one), beside the RNGs and the progress."""
    model, optimizer, scheduler, loss_fn = state
    return {
        "identity": dict(identity),
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "history": progress.history,
        "best": progress.best,
        "seconds": progress.seconds,
        "settings": asdict(settings),
        "objective": loss_fn.state_dict() if hasattr(loss_fn, "state_dict") else None,
    }


@dataclass
class _Progress:
    """What a run has done so far: its history rows, its best weights (``state``, ``epoch``,
    ``score``), its training seconds and optimiser steps, and the epoch it continues with."""

    history: list[dict]
    best: dict
    seconds: float = 0.0
    steps: int = 0
    next_epoch: int = 0


def _resume(
    checkpoint_path: Path,
    identity: Mapping[str, str],
    device: torch.device,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    loss_fn: LossFn,
    settings: TrainSettings,
) -> _Progress:
    """The progress of a run: fresh, or that of the checkpoint written with the same identity, whose
    model, optimiser, scheduler, RNG and objective states are restored."""
    fresh = _Progress([], {"state": copy.deepcopy(model.state_dict()), "epoch": -1, "score": -math.inf})
    resumed = _load_checkpoint(checkpoint_path, identity, device)
    if resumed is None:
        return fresh
    model.load_state_dict(resumed["model"])
    optimizer.load_state_dict(resumed["optimizer"])
    scheduler.load_state_dict(resumed["scheduler"])
    _set_rng_state(resumed["rng"])
    if resumed.get("objective") is not None:
        loss_fn.load_state_dict(resumed["objective"])
    history = resumed["history"]
    progress = _Progress(
        history,
        resumed["best"],
        resumed["seconds"],
        history[-1]["steps"] if history else 0,
        resumed["epoch"] + 1,
    )
    LOG.info("resuming from %s at epoch %d of %d", checkpoint_path, progress.next_epoch, settings.epochs)
    return progress


def _validate_epoch(
    model: nn.Module,
    validate: ValidateFn,
    progress: _Progress,
    epoch: int,
    train_loss: float,
    lr: float,
    tic: float,
    settings: TrainSettings,
) -> None:
    """Validate after an epoch: its history row, and its weights if they score best so far."""
    model.eval()
    with torch.no_grad():
        scores = validate(model)
    progress.seconds += time.perf_counter() - tic
    row = {
        "epoch": epoch + 1,
        "steps": progress.steps,
        "train_loss": train_loss,
        **scores,
        "lr": lr,
        "seconds": progress.seconds,
    }
    progress.history.append(row)
    if scores["score"] > progress.best["score"]:
        progress.best = {
            "state": copy.deepcopy(model.state_dict()),
            "epoch": epoch + 1,
            "score": scores["score"],
        }
    LOG.info("epoch %d/%d %s", epoch + 1, settings.epochs, _format_row(row))


def _epoch_loader(
    train_set: Dataset, settings: TrainSettings, epoch: int, device: torch.device, ranks: Ranks
) -> tuple[DataLoader, torch.Generator]:
    """The epoch's shuffled share of ``train_set`` and its noise generator, each seeded from
    ``(seed, epoch)`` (and the rank, for what each rank draws on its own)."""
    torch.manual_seed(epoch_seed(settings.seed, epoch, 0, ranks.rank))
    shuffle = torch.Generator().manual_seed(epoch_seed(settings.seed, epoch, 1))
    noise = torch.Generator(device=device).manual_seed(epoch_seed(settings.seed, epoch, 2, ranks.rank))
    loader = DataLoader(
        train_set,
        batch_size=settings.batch_size,
        sampler=distributed.ShardSampler(len(train_set), shuffle, ranks),
        generator=shuffle,
        collate_fn=collate,
        num_workers=settings.num_workers,
        pin_memory=settings.performance.pin_memory and device.type == "cuda",
        persistent_workers=False,
    )
    return loader, noise


def _train_epoch(
    model: nn.Module,
    loss_fn: LossFn,
    loader: DataLoader,
    noise: torch.Generator,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    settings: TrainSettings,
    device: torch.device,
    epoch: int,
    ranks: Ranks,
) -> tuple[float, int, int]:
    """One pass over ``loader`` with an optimiser step per batch; returns this rank's summed loss,
    its number of slices and the number of steps taken."""
    model.train()
    total, count, steps = 0.0, 0, 0
    bar = tqdm(
        loader, desc=f"epoch {epoch + 1}/{settings.epochs}", disable=not sys.stderr.isatty(), leave=False
    )
    for step, batch in enumerate(bar):
        batch = batch.to(device)
        # bf16 stays inside the networks; the loss and everything complex run in float32.
        with network_autocast(model, settings.performance, device):
            loss = loss_fn(model, batch, noise)
        if not distributed.all_finite(loss, ranks):
            raise NonFiniteLossError(_non_finite_loss_message(loss, batch, epoch, step))
        n = len(batch.fnames)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(params, n, ranks)
        if settings.grad_clip:
            nn.utils.clip_grad_norm_(params, settings.grad_clip)
        optimizer.step()
        steps += 1
        total += loss.item() * n
        count += n
        bar.set_postfix(loss=f"{total / count:.4g}")
    return total, count, steps


def _non_finite_loss_message(loss: torch.Tensor, batch: Batch, epoch: int, step: int) -> str:
    """Why the loss is not finite: the batch's data (named slice by slice) or the optimisation."""
    where = f"at epoch {epoch + 1}, step {step + 1}; no model was written"
    bad = set()
    for value in batch.tensors().values():
        if value.is_floating_point() or value.is_complex():
            finite = torch.isfinite(value).reshape(len(value), -1).all(dim=1)
            for i in torch.nonzero(~finite).flatten().tolist():
                bad.add(f"{batch.fnames[i]} slice {batch.slices[i]}")
    if bad:
        return f"loss is {loss.item()} {where}: the input data of {', '.join(sorted(bad))} is not finite"
    return (
        f"loss is {loss.item()} {where}. The batch's data is finite, so the training diverged: "
        "lower training.lr or set training.grad_clip, then re-run."
    )


def _format_row(row: dict) -> str:
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k != "epoch"
    )
