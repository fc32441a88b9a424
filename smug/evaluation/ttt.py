"""Test-time training: adapt a trained reconstruction network to one measurement before using it.

Following Darestani, Liu and Heckel's test-time training for deep-learning-based compressed sensing,
a copy of the trained network is fine-tuned on the test measurement ``y`` alone, minimising the
self-supervised k-space loss ``||M A f(y) - M y||_1 / ||M y||_1``
(:func:`smug.mri.consistency.kspace_consistency_loss`). A few sampled columns are held out: they
are removed from the network's input as well as from the loss, so the weights never depend on them,
and their loss tells when the adaptation starts fitting noise (self-validation early stopping, as in
:func:`smug.models.untrained.fit_untrained`).

The trained model is never modified; every call adapts a fresh deep copy.
"""

from __future__ import annotations

import copy
import hashlib
import math
import sys
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from smug.data import Batch, collate
from smug.evaluation.scoring import BatchTransform, VolumeStack
from smug.mri import apply_column_mask, kspace_consistency_loss, split_mask
from smug.models.reconstruct import reconstruct

SETTINGS = ("steps", "lr", "holdout_fraction", "patience", "check_every")


def _check_settings(steps: int, lr: float, holdout_fraction: float, patience: int, check_every: int) -> None:
    problems = [
        f"{name}={value}"
        for name, value, valid in (
            ("steps", steps, int(steps) == steps and steps >= 0),
            ("lr", lr, lr > 0),
            ("holdout_fraction", holdout_fraction, 0 <= holdout_fraction < 1),
            ("patience", patience, int(patience) == patience and patience >= 1),
            ("check_every", check_every, int(check_every) == check_every and check_every >= 1),
        )
        if not valid
    ]
    if problems:
        raise ValueError(f"invalid test-time-training setting(s): {', '.join(problems)}")


def _check_batch(batch: Batch) -> None:
    kspace, mask = batch.kspace, batch.mask
    if not isinstance(kspace, torch.Tensor) or kspace.ndim != 4 or not torch.is_complex(kspace):
        found = (
            f"{kspace.dtype} {tuple(kspace.shape)}"
            if isinstance(kspace, torch.Tensor)
            else type(kspace).__name__
        )
        raise ValueError(f"batch.kspace must be complex (B, C, H, W), got {found}")
    if not isinstance(mask, torch.Tensor) or mask.shape not in (
        (kspace.shape[-1],),
        (kspace.shape[0], kspace.shape[-1]),
    ):
        found = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"batch.mask must be (W,) or (B, W) for kspace {tuple(kspace.shape)}, got {found}")
    if batch.zero_filled is not None:
        # An image-domain input would reach the network in place of the training-column k-space,
        # carrying the held-out columns into the weights.
        raise ValueError(
            "test-time training needs k-space inputs, but the batch has an image-domain zero_filled"
        )


def _generator(seed: int, purpose: int, step: int, device: torch.device) -> torch.Generator:
    # Mixed through SeedSequence so that neighbouring seeds and steps do not share noise.
    state = np.random.SeedSequence([int(seed), purpose, step]).generate_state(1, dtype=np.uint32)[0]
    return torch.Generator(device=device).manual_seed(int(state))


def test_time_adapt(
    model: nn.Module,
    batch: Batch,
    *,
    steps: int,
    lr: float,
    holdout_fraction: float,
    patience: int,
    seed: int,
    check_every: int = 1,
    num_unrolls: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune a copy of ``model`` on ``batch``'s measurements alone; return it with the best weights.

    The sampled columns are split by :func:`smug.mri.consistency.split_mask` (generator seeded with
    ``seed``) into training and held-out columns. The network input is the k-space on the training
    columns only, with the training mask as the batch's mask, and Adam (``lr``, all parameters that
    require grad) minimises the consistency loss on the training columns, so the weights never
    depend on the held-out columns. Every ``check_every`` steps the held-out loss of the same
    reconstruction is computed without gradients; the weights with the lowest held-out loss are
    kept, and adaptation stops after ``patience`` checks without a new best (or after ``steps``
    steps). With ``holdout_fraction=0`` the last weights are kept.

    The copy runs in ``eval()`` mode, so BatchNorm keeps its training statistics and dropout is
    off, with gradients enabled even under ``torch.no_grad()`` or ``torch.inference_mode()``.
    Randomised models (SMUG, RS-E2E) draw their smoothing noise from a generator seeded by
    ``seed`` and the step, so a repeated call gives the same result.

    Args:
        model: trained reconstruction model with the shared call signature; not modified.
        batch: the measured slices, without an image-domain ``zero_filled``. The network weights
            are shared by the batch (the study adapts one slice at a time).
        steps: maximum number of Adam steps.
        lr: Adam learning rate (the study: 1e-4).
        holdout_fraction: fraction of the sampled columns held out, in ``[0, 1)`` (the study: 0.05).
        patience: held-out checks without improvement before stopping, at least 1.
        seed: fixes the column split and the smoothing noise.
        check_every: steps between held-out checks.
        num_unrolls: unroll-count override for unrolled models.

    Returns:
        ``(adapted, info)``: the adapted copy in eval mode, and a dict with ``steps`` (Adam steps
        taken), ``best_step``, ``initial_train_loss``, ``final_train_loss``, ``best_train_loss``
        (at ``best_step``), ``initial_holdout_loss``, ``final_holdout_loss``,
        ``best_holdout_loss`` (the holdout entries None without a held-out set), ``stopped_early``,
        ``train_losses`` (one per evaluated iterate), ``holdout_losses`` (one per check) and
        ``holdout_columns`` (column indices; one list per row for a ``(B, W)`` mask).

    Raises:
        ValueError: invalid settings or batch, or a model without trainable parameters.
    """
    _check_settings(steps, lr, holdout_fraction, patience, check_every)
    _check_batch(batch)
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no parameters to adapt")
    with torch.inference_mode(False), torch.enable_grad():
        # Clones made outside inference mode, so autograd may save them for the backward pass.
        batch = batch.map_tensors(lambda tensor: tensor.detach().clone())
        adapted = copy.deepcopy(model).eval()
        info = _adapt(
            adapted,
            batch,
            int(steps),
            lr,
            holdout_fraction,
            int(patience),
            int(seed),
            int(check_every),
            num_unrolls,
        )
    return adapted, info


def _adapt(
    adapted: nn.Module,
    batch: Batch,
    steps: int,
    lr: float,
    holdout_fraction: float,
    patience: int,
    seed: int,
    check_every: int,
    num_unrolls: int | None,
) -> dict[str, Any]:
    kspace, mask, sens_maps = batch.kspace, batch.mask != 0, batch.sens_maps
    device = kspace.device
    train_mask, holdout_mask = split_mask(mask, holdout_fraction, torch.Generator().manual_seed(seed))
    has_holdout = bool(holdout_mask.any())
    train_batch = replace(batch, kspace=apply_column_mask(kspace, train_mask), mask=train_mask)

    parameters = [parameter for parameter in adapted.parameters() if parameter.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    best_state = None
    best_loss = math.inf
    best_step = 0
    best_train_loss = math.nan
    holdout_losses: list[float] = []
    train_losses: list[float] = []
    checks_without_improvement = 0
    stopped_early = False
    step = 0
    # Iterate ``step`` is the network after that many Adam steps; the last one is only evaluated.
    for step in range(steps + 1):
        recon = reconstruct(adapted, train_batch, _generator(seed, 1, step, device), num_unrolls=num_unrolls)
        train_loss = kspace_consistency_loss(recon, kspace, train_mask, sens_maps)
        train_losses.append(float(train_loss.detach()))
        if has_holdout and (step % check_every == 0 or step == steps):
            with torch.no_grad():
                holdout_loss = float(kspace_consistency_loss(recon.detach(), kspace, holdout_mask, sens_maps))
            holdout_losses.append(holdout_loss)
            if holdout_loss < best_loss:
                best_loss, best_step, best_train_loss = holdout_loss, step, train_losses[-1]
                best_state = copy.deepcopy(adapted.state_dict())
                checks_without_improvement = 0
            else:
                checks_without_improvement += 1
                if checks_without_improvement >= patience:
                    stopped_early = True
                    break
        if step == steps:
            break
        optimizer.zero_grad(set_to_none=True)
        train_loss.backward()
        optimizer.step()
    if best_state is None:  # no held-out set: the last weights
        best_step, best_train_loss = step, train_losses[-1]
    else:
        adapted.load_state_dict(best_state)
    if holdout_mask.ndim == 1:
        holdout_columns: list = torch.nonzero(holdout_mask.cpu()).flatten().tolist()
    else:
        holdout_columns = [torch.nonzero(row).flatten().tolist() for row in holdout_mask.cpu()]
    return {
        "steps": step,
        "best_step": best_step,
        "initial_train_loss": train_losses[0],
        "final_train_loss": train_losses[-1],
        "best_train_loss": best_train_loss,
        "initial_holdout_loss": holdout_losses[0] if has_holdout else None,
        "final_holdout_loss": holdout_losses[-1] if has_holdout else None,
        "best_holdout_loss": best_loss if has_holdout else None,
        "stopped_early": stopped_early,
        "train_losses": train_losses,
        "holdout_losses": holdout_losses,
        "holdout_columns": holdout_columns,
    }


def test_time_train(
    model: nn.Module,
    batch: Batch,
    *,
    steps: int,
    lr: float,
    holdout_fraction: float,
    patience: int,
    seed: int,
    check_every: int = 1,
    num_unrolls: int | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Adapt a copy of ``model`` to ``batch`` (:func:`test_time_adapt`) and reconstruct with it.

    The reconstruction feeds the adapted network the FULL measurement (all sampled columns, the
    batch's own mask): the held-out columns served only to choose the stopping point, and
    withholding them at the end would throw away data every other method gets to use. Smoothing
    noise of randomised models comes from a generator seeded by ``seed``.

    Args:
        model, batch, steps, lr, holdout_fraction, patience, seed, check_every, num_unrolls: as in
            :func:`test_time_adapt`.

    Returns:
        ``(recon, info)``: complex ``(B, H, W)`` detached reconstruction and
        :func:`test_time_adapt`'s info dict.
    """
    adapted, info = test_time_adapt(
        model,
        batch,
        steps=steps,
        lr=lr,
        holdout_fraction=holdout_fraction,
        patience=patience,
        seed=seed,
        check_every=check_every,
        num_unrolls=num_unrolls,
    )
    with torch.no_grad():
        generator = _generator(int(seed), 2, 0, batch.kspace.device)
        recon = reconstruct(adapted, batch, generator, num_unrolls=num_unrolls)
    return recon.detach(), info


# The names start with "test_"; keep pytest from collecting them where a test module imports them.
test_time_adapt.__test__ = False
test_time_train.__test__ = False


def batch_seed(seed: int, fnames: list[str], slices: list[int]) -> int:
    """Seed of the adaptation of one batch, from ``seed`` and the slices it holds (not its position)."""
    key = "/".join(f"{fname}:{int(index)}" for fname, index in zip(fnames, slices))
    digest = hashlib.sha256(f"smug-ttt/{int(seed)}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def ttt_reconstruct(
    model: nn.Module,
    dataset,
    device: torch.device,
    batch_size: int,
    seed: int,
    settings: dict[str, Any],
    transform: BatchTransform | None = None,
    num_unrolls: int | None = None,
    progress: str | None = "test-time training",
    infos: list[dict[str, Any]] | None = None,
) -> dict[str, VolumeStack]:
    """Reconstruct every slice of ``dataset`` with test-time training, grouped by volume.

    The test-time counterpart of :func:`smug.evaluation.scoring.reconstruct_volumes`, with the same return
    structure, so :func:`smug.evaluation.scoring.volume_rows` scores it. Every batch adapts its own copy of
    ``model`` (:func:`test_time_train`); ``batch_size=1`` adapts each slice separately, as the study
    does. The adaptation seed of a batch is derived from ``seed`` and the batch's (fname, slice)
    pairs.

    Args:
        model: trained reconstruction model; not modified.
        dataset: a :class:`smug.data.datasets.SliceDataset`.
        device: where to run.
        batch_size: slices adapted together.
        seed: base seed of the column splits and smoothing noise.
        settings: :func:`test_time_train` keyword arguments among ``steps``, ``lr``,
            ``holdout_fraction``, ``patience`` and ``check_every``.
        transform: ``(batch, first_index) -> batch`` applied before adaptation (e.g. small features).
        num_unrolls: override for unrolled models.
        progress: label of a tqdm progress bar (shown only on a terminal); None hides it.
        infos: if given, one :func:`test_time_train` info dict per batch is appended, with the
            batch's ``fname`` and ``slice`` lists added.

    Returns:
        ``{fname: VolumeStack}`` of magnitudes.
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(
            f"unknown test-time-training setting(s) {', '.join(unknown)}; valid: {', '.join(SETTINGS)}"
        )
    missing = sorted({"steps", "lr", "holdout_fraction", "patience"} - set(settings))
    if missing:
        raise ValueError(f"test-time-training settings lack {', '.join(missing)}")
    volumes: dict[str, VolumeStack] = defaultdict(VolumeStack)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    first = 0
    for batch in tqdm(
        loader, desc=progress, disable=progress is None or not sys.stderr.isatty(), leave=False
    ):
        batch = batch.to(device)
        if transform is not None:
            batch = transform(batch, first)
        slices = [int(index) for index in batch.slices]
        recon, info = test_time_train(
            model,
            batch,
            seed=batch_seed(seed, batch.fnames, slices),
            num_unrolls=num_unrolls,
            **settings,
        )
        if infos is not None:
            infos.append({"fname": list(batch.fnames), "slice": slices, **info})
        for i, (fname, slice_idx) in enumerate(zip(batch.fnames, slices)):
            stack = volumes[fname]
            stack.slices.append(slice_idx)
            stack.recon.append(recon[i].abs().cpu().numpy())
            stack.target.append(batch.target[i].abs().cpu().numpy())
        first += len(batch.fnames)
    return dict(volumes)
