"""The study's training stages, wired from a spec: which model, which loss, initialised from what.

==================  ======================================  =====================================
stage (spec kind)   objective                               initialised from
==================  ======================================  =====================================
denoiser            Gaussian denoising of ground truth      scratch
modl                end-to-end reconstruction loss          pre-trained denoiser
smug                unrolled stability + lambda * rec       pre-trained denoiser (ablations: a
                                                            trained MoDL, or random weights)
weighted_smug       unrolled stability + lambda * rec       pre-trained denoiser (encoder: scratch)
rs_e2e              match frozen MoDL's clean output        trained MoDL
modl_pgd            loss at a PGD k-space perturbation      trained MoDL
unet                end-to-end loss (fastMRI U-Net)         scratch
unet_adv            min-max against a perturbation          scratch (generator: scratch)
                    generator (image or k-space domain)
==================  ======================================  =====================================
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from smug.data import SliceDataset, collate, make_dataset
from smug.training.distributed import SINGLE, Ranks
from smug.utils import atomic_path, dump_json, epoch_seed, file_digest, files_digest, provenance
from smug.evaluation import psnr, ssim
from smug.models import (
    load_method,
    record_kind,
    build_model,
    data_consistency_weight,
    denoiser_of,
    unrolled_core,
    perturbation_generator,
)
from smug.models import ZeroFilled, set_memory
from smug.models import complex_gaussian, denoise_complex
from smug.study import FAMILIES, KINDS
from smug.training.minmax import MinMaxObjective
from smug.training.objectives import (
    denoiser_pretraining_loss,
    distillation_loss,
    end_to_end_loss,
    score_matching_objective,
    pgd_training_loss,
    reconstruction_loss,
    unrolled_stability_loss,
)
from smug.models.reconstruct import reconstruct
from smug.training.loop import FitResult, LossFn, TrainSettings, fit
from smug.mri import clamp_complex

LOG = logging.getLogger(__name__)

TRAIN_SETTING_KEYS = {f for f in TrainSettings.__dataclass_fields__}


def run_id(spec: dict[str, Any]) -> str:
    """Stable hash of a spec: identifies a configuration in checkpoints and tables."""
    return hashlib.sha256(dump_json(spec).encode()).hexdigest()[:16]


def checkpoint_identity(
    spec: dict[str, Any],
    train_set: SliceDataset,
    val_set: SliceDataset,
    mask_path: str | os.PathLike | None,
    init_path: str | os.PathLike | None,
    ranks: Ranks,
) -> dict[str, str]:
    """Everything that determines the weights a training run ends with, part by part.

    The spec (with its seed), the number of data-parallel ranks (the effective batch), and digests
    (:func:`smug.utils.io.file_digest`) of the starting weights, the training and validation volumes in
    their order, their sensitivity maps and the mask. A checkpoint is resumed only by a run whose
    identity equals the one that wrote it, so retraining a model because its starting denoiser,
    its data or its mask changed never picks up the weights of the run before.
    """

    def volumes(dataset: SliceDataset) -> list[Path]:
        return list(dict.fromkeys(ref.path for ref in dataset.refs))

    def maps(dataset: SliceDataset) -> list[Path]:
        if not dataset.sens_dirs:
            return []
        found = (dataset.sens_map_path(path.name) for path in volumes(dataset))
        return [path for path in found if path.is_file()]

    def optional(path: str | os.PathLike | None) -> str:
        return "none" if path is None else file_digest(path)

    return {
        "spec": run_id(spec),
        "ranks": str(ranks.world_size),
        "starting weights": optional(init_path),
        "mask": optional(mask_path),
        "training data": files_digest(volumes(train_set)),
        "validation data": files_digest(volumes(val_set)),
        "sensitivity maps": files_digest(maps(train_set) + maps(val_set)),
    }


def train_settings(spec: dict[str, Any]) -> TrainSettings:
    cfg = {k: v for k, v in spec["training"].items() if k in TRAIN_SETTING_KEYS}
    return TrainSettings(seed=spec["seed"], **cfg)


def _end_to_end(
    spec: dict[str, Any], teacher: nn.Module | None, image_shape: Sequence[int], device
) -> LossFn:
    magnitude = spec["model"].get("input_mode") == "magnitude"
    return functools.partial(end_to_end_loss, loss_name=spec["training"]["loss"], magnitude=magnitude)


def _score_matching(
    spec: dict[str, Any], teacher: nn.Module | None, image_shape: Sequence[int], device
) -> LossFn:
    return score_matching_objective


def _denoising(spec: dict[str, Any], teacher: nn.Module | None, image_shape: Sequence[int], device) -> LossFn:
    return functools.partial(denoiser_pretraining_loss, sigma=spec["training"]["pretrain_sigma"])


def _stability(spec: dict[str, Any], teacher: nn.Module | None, image_shape: Sequence[int], device) -> LossFn:
    training = spec["training"]
    return functools.partial(
        unrolled_stability_loss, target=training["ustab_target"], lambda_rec=training["lambda_rec"]
    )


def _distillation(
    spec: dict[str, Any], teacher: nn.Module | None, image_shape: Sequence[int], device
) -> LossFn:
    return functools.partial(distillation_loss, teacher=teacher)


def _pgd_training(
    spec: dict[str, Any], teacher: nn.Module | None, image_shape: Sequence[int], device
) -> LossFn:
    adv = spec["adversarial"]
    return functools.partial(
        pgd_training_loss,
        eps=adv["eps"],
        steps=adv["steps"],
        norm=adv["norm"],
        loss_name=spec["training"]["loss"],
    )


def _minmax(spec: dict[str, Any], teacher: nn.Module | None, image_shape: Sequence[int], device) -> LossFn:
    adv = spec["adversarial"]
    return MinMaxObjective(
        perturbation_generator(spec, image_shape).to(device),
        eps=adv["eps"],
        alpha=adv["alpha"],
        penalty_weight=adv["penalty_weight"],
        loss_fn=reconstruction_loss(spec["training"]["loss"], spec["model"].get("input_mode") == "magnitude"),
        domain=adv["domain"],
        lr=adv["lr"],
        weight_decay=adv["weight_decay"],
    )


# A stage's objective follows its registry entry (smug.study.methods.KINDS): adversarial training if it
# has an adversary, else what its smoothing asks for, else its family's loss (smug.study.methods.FAMILIES).
_ADVERSARY_LOSSES = {"modl_pgd": _pgd_training, "unet_adv": _minmax}
_SMOOTHING_LOSSES = {"smug": _stability, "weighted": _stability, "e2e": _distillation}
_FAMILY_LOSSES = {"denoising": _denoising, "end_to_end": _end_to_end, "score_matching": _score_matching}


def loss_for(spec: dict[str, Any], teacher: nn.Module | None, image_shape: Sequence[int], device) -> LossFn:
    """The stage's ``(model, batch, generator) -> loss``."""
    kind = KINDS.get(spec["kind"])
    if kind is None or kind.made_by != "train":
        raise ValueError(f"no training stage for kind {spec['kind']!r}")
    if kind.adversarial is not None:
        make = _ADVERSARY_LOSSES[kind.adversarial]
    elif kind.smoothing is not None:
        make = _SMOOTHING_LOSSES[kind.smoothing]
    else:
        make = _FAMILY_LOSSES[FAMILIES[kind.family].loss]
    return make(spec, teacher, image_shape, device)


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: SliceDataset,
    device: torch.device,
    batch_size: int,
    seed: int,
    denoise_sigma=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes of reconstructions (or of denoised noisy targets) and targets, ``(N, h, w)`` each.

    The smoothing noise comes from a generator seeded with ``seed`` so scores are repeatable.
    """
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    preds, targets = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        batch = batch.to(device)
        if denoise_sigma is None:
            out = reconstruct(model, batch, generator)
        else:
            target = batch.target
            noisy = clamp_complex(
                target + complex_gaussian(tuple(target.shape), denoise_sigma, target, generator)
            )
            out = denoise_complex(model, noisy)
        preds.append(out.abs().cpu())
        targets.append(batch.target.abs().cpu())
    return torch.cat(preds).numpy(), torch.cat(targets).numpy()


def validation_scores(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """fastMRI PSNR/SSIM over the stacked validation slices; ``score`` (higher is better) is PSNR."""
    value = psnr(target, pred)
    return {"score": value, "val_psnr": value, "val_ssim": ssim(target, pred)}


def initialise(model: nn.Module, spec: dict[str, Any], init_path: str | None, device) -> nn.Module | None:
    """Load the stage's starting weights; returns the frozen teacher of a network smoothed end to end
    (RS-E2E), else None."""
    kind = KINDS[spec["kind"]]
    distils = kind.smoothing == "e2e"
    # Denoisers and U-Nets are trained from scratch; unrolled networks start from a trained one,
    # unless their spec says `init: null` (the pre-training ablation's random initialisation).
    if kind.family != "unrolled":
        return None
    if "init" in spec and spec["init"] is None:
        if distils:
            raise ValueError(
                "RS-E2E smooths a trained MoDL and cannot start from random weights (init: null)"
            )
        if init_path is not None:
            raise ValueError(
                f"{spec['name']}: its spec says init: null (random weights), but --init {init_path} was given"
            )
        return None
    if init_path is None:
        raise ValueError(f"stage {spec['kind']!r} needs --init (a pre-trained denoiser or MoDL model.pt)")
    source, record = load_method(init_path, device)
    source_kind = record_kind(record)
    if KINDS[source_kind].family not in ("denoiser", "unrolled"):
        raise ValueError(
            f"{spec['name']} starts from a trained denoiser or unrolled network, but --init {init_path} "
            f"is a {source_kind!r} model"
        )
    if distils and not _is_plain_unrolled(source_kind):
        raise ValueError(f"RS-E2E must start from a trained MoDL, but {init_path} is {source_kind!r}")
    if KINDS[source_kind].family == "denoiser":
        denoiser_of(model).load_state_dict(source.state_dict())
        return None
    # A trained unrolled network hands over all its weights (MoDL: its denoiser and data-consistency
    # weight alike); only Weighted SMUG's encoder, which the source lacks, starts from scratch.
    core, source_core = unrolled_core(model), unrolled_core(source)
    if type(core) is not type(source_core):
        raise ValueError(
            f"{spec['name']} is a {type(core).__name__} network, but --init {init_path} holds a "
            f"{type(source_core).__name__}: a method starts from a network of its own backbone"
        )
    missing, unexpected = core.load_state_dict(source_core.state_dict(), strict=False)
    missing = [key for key in missing if not key.startswith("weight_encoder.")]
    if missing or unexpected:
        raise ValueError(
            f"{spec['name']}: --init {init_path} does not fit its network "
            f"({'missing ' + missing[0] if missing else 'unexpected ' + unexpected[0]})"
        )
    if not distils:
        return None
    for p in source.parameters():
        p.requires_grad_(False)
    return source


def _is_plain_unrolled(kind: str) -> bool:
    """Whether ``kind`` is unrolled with neither smoothing nor an adversary (MoDL)."""
    entry = KINDS[kind]
    return entry.family == "unrolled" and entry.smoothing is None and entry.adversarial is None


def train_stage(
    spec: dict[str, Any],
    train_paths: Sequence[str],
    val_paths: Sequence[str],
    mask_path: str,
    out_model: str | os.PathLike,
    out_metrics: str | os.PathLike,
    checkpoint: str | os.PathLike,
    device: torch.device,
    sens_dir: str | Sequence[str] | None = None,
    init_path: str | None = None,
    on_epoch_end=None,
    ranks: Ranks = SINGLE,
    memory: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one stage end to end and write ``model.pt`` and ``metrics.csv`` atomically.

    ``memory`` (``checkpoint_unrolls``, ``sample_chunk``: :func:`smug.models.set_memory`) bounds the
    backward passes' memory; it changes neither the weights beyond float rounding nor the spec.

    With several data-parallel ``ranks`` (:mod:`smug.training.distributed`), each trains on its share of
    every batch of ``training.batch_size`` slices per rank, and rank 0 alone writes the checkpoint,
    the metrics and the model. Returns the saved record (without the weights) for logging.
    """
    if ranks.distributed and not KINDS[spec["kind"]].data_parallel:
        raise ValueError(
            f"{spec['name']}: the min-max game's generator takes its own optimiser steps inside the "
            "objective, which data-parallel ranks would not share; train it on one GPU"
        )
    tic = time.perf_counter()
    torch.manual_seed(spec["seed"])
    model = build_model(spec["kind"], spec["model"], spec.get("smoothing")).to(device)
    teacher = initialise(model, spec, init_path, device)
    set_memory(model, **(memory or {}))
    # A denoiser learns on fully sampled targets and is scored on them, against its noisy input.
    denoiser = FAMILIES[KINDS[spec["kind"]].family].loss == "denoising"

    mask = None if denoiser else mask_path
    data = spec["data"]
    train_set = make_dataset(train_paths, data["train_slices"], mask, sens_dir)
    val_set = make_dataset(val_paths, data["val_slices"], mask, sens_dir)
    LOG.info("%s: %d training and %d validation slices", spec["name"], len(train_set), len(val_set))

    settings = train_settings(spec)
    denoise_sigma = spec["training"]["pretrain_sigma"] if denoiser else None
    val_seed = epoch_seed(spec["seed"], 0, 99)

    def validate(m: nn.Module) -> dict[str, float]:
        scores = validation_scores(*predict(m, val_set, device, settings.batch_size, val_seed, denoise_sigma))
        lam = data_consistency_weight(m)
        return scores if lam is None else {**scores, "lam": lam}

    references = _reference_scores(spec["name"], model, validate, denoiser, device)

    objective = loss_for(spec, teacher, train_set[0]["target"].shape, device)
    identity = checkpoint_identity(spec, train_set, val_set, mask, init_path, ranks)
    result = fit(
        model,
        objective,
        train_set,
        validate,
        settings,
        device,
        checkpoint,
        identity,
        trainable=[p for p in model.parameters() if p.requires_grad],
        on_epoch_end=on_epoch_end,
        ranks=ranks,
    )
    model.load_state_dict(result.best_state)
    record = _stage_record(spec, identity, result, references, model, objective, train_set, ranks, tic)
    if ranks.main:
        write_history_csv(out_metrics, result.history, result.best_epoch)
        with atomic_path(out_model) as tmp:
            torch.save({**record, "state_dict": result.best_state}, tmp)
        # A finished run's checkpoint has done its work; left behind, it could only mislead.
        Path(checkpoint).unlink(missing_ok=True)
    return record


def _reference_scores(
    name: str, model: nn.Module, validate: Callable, denoiser: bool, device: torch.device
) -> dict[str, float]:
    """What training must beat, on the same validation slices and noise draws: the identity for the
    denoiser (its noisy input), zero-filled for the reconstructions, and the initial weights."""
    reference = nn.Identity() if denoiser else ZeroFilled()
    with torch.no_grad():
        references = {
            "reference_val_psnr": validate(reference.to(device))["val_psnr"],
            "init_val_psnr": validate(model)["val_psnr"],
        }
    LOG.info(
        "%s: validation PSNR %.2f dB at initialisation, %.2f dB for the %s",
        name,
        references["init_val_psnr"],
        references["reference_val_psnr"],
        "noisy input" if denoiser else "zero-filled reconstruction",
    )
    return references


def _stage_record(
    spec: dict[str, Any],
    identity: dict[str, str],
    result: FitResult,
    references: dict[str, float],
    model: nn.Module,
    objective,
    train_set,
    ranks: Ranks,
    tic: float,
) -> dict[str, Any]:
    """The saved record of a finished stage, without its weights: spec, inputs, the training's
    outcome and history, the references it beat, timing and provenance (and a min-max game's
    generator, replayed by the evaluation as a transfer attack on every model)."""
    record = {
        "spec": spec,
        "run_id": run_id(spec),
        "inputs": identity,
        "best_epoch": result.best_epoch,
        "best_val_psnr": result.best_score,
        **references,
        "optimizer_steps": result.steps,
        "lam": data_consistency_weight(model),
        "history": result.history,
        "train_seconds": result.seconds,
        "wall_seconds": time.perf_counter() - tic,
        "ranks": ranks.world_size,
        "provenance": provenance(),
    }
    if isinstance(objective, MinMaxObjective):
        record["generator"] = {
            "image_shape": list(train_set[0]["target"].shape),
            "state_dict": objective.generator_net.state_dict(),
        }
    return record


def write_history_csv(path: str | os.PathLike, history: list[dict], best_epoch: int) -> None:
    """Per-epoch log with a ``best`` column marking the kept epoch."""
    buffer = io.StringIO()
    fields = list(history[0].keys()) + ["best"] if history else ["epoch", "best"]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in history:
        writer.writerow({**row, "best": row["epoch"] == best_epoch})
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
