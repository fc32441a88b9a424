"""The robustness study's experiments, as functions the pipeline's scripts call.

``evaluate_model`` scores one model under every condition: clean, each saved attack (written by
:mod:`smug.attacks.generation`) and its random-noise counterpart, the trained min-max generators
replayed as transfer attacks, sampling-rate shift, unrolling shift, anatomy shift and small-feature
recovery; ``evaluate_test_time_training`` scores a trained network adapted to each
shifted-anatomy test measurement (test-time training).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import pandas as pd
import torch
from torch import nn

from smug.attacks import apply_perturbation, load_attack, perturb_input
from smug.models import perturbation_generator, load_method, read_record, record_kind
from smug.data import Batch, make_dataset
from smug.evaluation.scoring import (
    ROW_COLUMNS,
    VolumeStack,
    reconstruct_volumes,
    save_reconstructions,
    volume_rows,
)
from smug.utils import atomic_dir, atomic_path
from smug.study import FAMILIES, KINDS, model_name
from smug.evaluation.small_features import feature_transform, score_features
from smug.evaluation.ttt import ttt_reconstruct

LOG = logging.getLogger(__name__)


def _attack_transform(delta: torch.Tensor, domain: str, fnames: list[str], slices: list[int]):
    """A batch transform adding the saved perturbation of each slice (checked by name and index)."""

    def transform(batch: Batch, first: int) -> Batch:
        n = len(batch.fnames)
        expected = list(zip(fnames[first : first + n], slices[first : first + n]))
        got = list(zip(batch.fnames, (int(s) for s in batch.slices)))
        if expected != got:
            raise ValueError(
                f"attack file perturbs slices {expected[:2]}..., evaluation reached {got[:2]}..."
            )
        return apply_perturbation(batch, delta[first : first + n].to(batch.kspace.device), domain)

    return transform


def _generator_transform(record: dict, device: torch.device, seed: int):
    """Replay a trained min-max generator as an attack: fresh latents from a fixed seed."""
    net = perturbation_generator(record["spec"], record["generator"]["image_shape"]).to(device)
    net.load_state_dict(record["generator"]["state_dict"])
    net.eval()
    latent_gen = torch.Generator(device=device).manual_seed(seed)
    domain = record["spec"]["adversarial"]["domain"]

    def transform(batch: Batch, first: int) -> Batch:
        with torch.no_grad():
            perturbation = net(net.sample_latent(len(batch.fnames), latent_gen))
        return replace(batch, zero_filled=perturb_input(batch, perturbation, domain))

    return transform


def evaluate_model(
    *,
    model: str,
    test: Sequence[str],
    masks: Sequence[str],
    train_mask: str,
    sens_dir: str | Sequence[str] | None,
    test_slices: int | None,
    attack_files: Sequence[str],
    generators: Sequence[str],
    unrolls: Sequence[int],
    batch_size: int,
    seed: int,
    out: str,
    recon_dir: str,
    device: torch.device,
    shift_test: Sequence[str] = (),
    small_features: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Score ``model`` under every condition; write per-volume rows to ``out`` and the
    reconstructions (fastMRI layout, key ``reconstruction``) under ``recon_dir/{condition}/{level}/``.

    ``shift_test`` (volumes of the other anatomy) adds the ``anatomy_shift`` rows: the clean
    reconstruction of data unlike any training image. ``small_features`` (``num_features``,
    ``size``, ``contrast``, ``kind``) adds the ``small_feature`` rows at level ``size``: image metrics
    of the test slices with the features inserted, plus ``feature_error`` and ``feature_detected``
    (the fraction of a volume's features detected), see :mod:`smug.evaluation.small_features`.

    Returns the per-volume rows.
    """
    # Every input is read before the first reconstruction, so a bad one fails the run at once,
    # naming its file, and the reconstruction folder appears only complete.
    net, record = load_method(model, device)
    attack_levels = [load_attack(path) for path in attack_files]
    generator_records = {model_name(path): read_record(path, device) for path in generators}
    with atomic_dir(recon_dir) as recon_tmp:
        rows = _score_conditions(
            net,
            record,
            name=model_name(model),
            test=test,
            masks=masks,
            train_mask=train_mask,
            sens_dir=sens_dir,
            test_slices=test_slices,
            attack_levels=attack_levels,
            generator_records=generator_records,
            unrolls=unrolls,
            batch_size=batch_size,
            seed=seed,
            recon_dir=recon_tmp,
            device=device,
            shift_test=shift_test,
            small_features=small_features,
        )
    table = pd.DataFrame(rows).assign(seed=seed)[ROW_COLUMNS]
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return table


def _score_conditions(
    net: nn.Module,
    record: dict,
    *,
    name: str,
    test: Sequence[str],
    masks: Sequence[str],
    train_mask: str,
    sens_dir: str | Sequence[str] | None,
    test_slices: int | None,
    attack_levels: list[list[tuple[torch.Tensor, dict[str, Any]]]],
    generator_records: dict[str, dict],
    unrolls: Sequence[int],
    batch_size: int,
    seed: int,
    recon_dir: Path,
    device: torch.device,
    shift_test: Sequence[str],
    small_features: dict[str, Any] | None,
) -> list[dict]:
    """:func:`evaluate_model`'s conditions, run in turn; returns the per-volume rows."""
    family = KINDS[record_kind(record)].family
    base = make_dataset(test, test_slices, train_mask, sens_dir)
    runner = _Runner(net, name, base, device, batch_size, seed, recon_dir)
    clean = runner.run("clean", 0.0)
    save_reconstructions(recon_dir / "target", clean, "reconstruction_rss")

    for levels in attack_levels:
        for delta, attrs in levels:
            transform = _attack_transform(delta, attrs["domain"], attrs["fname"], attrs["slice"])
            runner.run(attrs["attack"], attrs["eps"], transform=transform)
    for source_name, source in generator_records.items():
        runner.run(f"generator_{source_name}", 1.0, transform=_generator_transform(source, device, seed))

    for mask_path in masks:
        acceleration = float(np.load(mask_path)["acceleration"])
        if os.path.samefile(mask_path, train_mask):
            runner.same_as_clean(clean, "acceleration", acceleration)
            continue
        shifted = make_dataset(test, test_slices, mask_path, sens_dir)
        runner.run("acceleration", acceleration, dataset=shifted)

    # The unroll-count shift needs one regulariser shared by every unroll (MoDL's); E2E-VarNet's
    # cascades and ISTA-Net+'s phases each have their own weights, so they have no count to change.
    shares_unrolls = "num_unrolls" in record.get("spec", {}).get("model", {})
    if FAMILIES[family].unrolls and unrolls and not shares_unrolls:
        LOG.info(
            "no unroll-count shift: the %s backbone's unrolls do not share weights",
            record["spec"]["model"]["backbone"],
        )
    if FAMILIES[family].unrolls and unrolls and shares_unrolls:
        trained_unrolls = record["spec"]["model"]["num_unrolls"]
        for n in unrolls:
            if n == trained_unrolls:
                runner.same_as_clean(clean, "unrolls", float(n))
            else:
                runner.run("unrolls", float(n), num_unrolls=n)

    if shift_test:
        shifted = make_dataset(shift_test, test_slices, train_mask, sens_dir)
        shift = runner.run("anatomy_shift", 0.0, dataset=shifted)
        save_reconstructions(recon_dir / "anatomy_shift" / "target", shift, "reconstruction_rss")

    if small_features is not None:
        _score_small_features(runner, small_features, seed)
    return runner.rows


@dataclass
class _Runner:
    """Scores one model under its conditions in turn: each condition's per-volume rows are
    collected in ``rows`` and its reconstructions saved under ``recon_dir/<perturbation>/<level>``."""

    net: nn.Module
    name: str
    base: Any
    device: torch.device
    batch_size: int
    seed: int
    recon_dir: Path
    rows: list[dict] = field(default_factory=list)

    def run(self, perturbation: str, level: float, dataset=None, transform=None, num_unrolls=None, save=True):
        volumes = reconstruct_volumes(
            self.net,
            self.base if dataset is None else dataset,
            self.device,
            self.batch_size,
            self.seed,
            transform,
            num_unrolls,
            progress=f"{self.name} {perturbation} {level:g}",
        )
        self.rows.extend(volume_rows(volumes, self.name, perturbation, level))
        if save:
            save_reconstructions(self.recon_dir / perturbation / f"{level:g}", volumes, "reconstruction")
        return volumes

    def same_as_clean(self, clean, perturbation: str, level: float) -> None:
        # The shift's setting is the training one: the clean reconstruction (same data, mask,
        # unrolls and noise draws) is its result, bit for bit, so it is not computed again.
        self.rows.extend(volume_rows(clean, self.name, perturbation, level))
        save_reconstructions(self.recon_dir / perturbation / f"{level:g}", clean, "reconstruction")


def _score_small_features(runner: _Runner, small_features: dict[str, Any], seed: int) -> None:
    """Small features inserted into the test images: their reconstructions, windows and scores."""
    windows: dict[tuple[str, int], list[np.ndarray]] = {}
    settings = {k: small_features[k] for k in ("num_features", "size", "contrast", "kind")}
    transform = feature_transform(seed=seed, record=windows, **settings)
    level = float(settings["size"])
    featured = runner.run("small_feature", level, transform=transform)
    folder = runner.recon_dir / "small_feature"
    save_reconstructions(folder / "target", featured, "reconstruction_rss")
    save_feature_windows(folder / "windows.h5", featured, windows)
    runner.rows.extend(feature_rows(featured, windows, runner.name, level))


def feature_rows(
    volumes: dict[str, VolumeStack],
    windows: dict[tuple[str, int], list[np.ndarray]],
    model: str,
    level: float,
) -> list[dict]:
    """Per-volume ``feature_error`` (mean over the volume's features) and ``feature_detected``
    (fraction detected) rows in the per-volume table's schema."""
    scores = pd.DataFrame(score_features(volumes, windows))
    rows = []
    for fname, group in scores.groupby("volume", sort=True):
        n_slices = group["slice"].nunique()
        for metric, value in (
            ("feature_error", group["feature_error"].mean()),
            ("feature_detected", group["detected"].astype(float).mean()),
        ):
            rows.append(
                {
                    "model": model,
                    "perturbation": "small_feature",
                    "level": level,
                    "metric": metric,
                    "volume": fname,
                    "value": float(value),
                    "n_slices": int(n_slices),
                }
            )
    return rows


def save_feature_windows(
    path: str | os.PathLike, volumes: dict[str, VolumeStack], windows: dict[tuple[str, int], list[np.ndarray]]
) -> None:
    """One uint8 label map ``(S, h, w)`` per volume (0 background, ``k`` the k-th feature), in the
    slice order of the saved reconstructions, so figures can find and zoom into the features."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for fname, stack in sorted(volumes.items()):
            labels = []
            for slice_idx in sorted(stack.slices):
                label = np.zeros(stack.recon[0].shape, dtype=np.uint8)
                for k, window in enumerate(windows[(fname, int(slice_idx))], start=1):
                    label[window] = k
                labels.append(label)
            f.create_dataset(fname, data=np.stack(labels))


def evaluate_test_time_training(
    *,
    model: str,
    test: Sequence[str],
    mask: str,
    sens_dir: str | Sequence[str] | None,
    test_slices: int | None,
    settings: dict[str, Any],
    batch_size: int,
    seed: int,
    out: str,
    device: torch.device,
) -> pd.DataFrame:
    """Score ``model`` adapted by test-time training to each batch of ``test`` (the shifted anatomy);
    per-volume rows with perturbation ``ttt_anatomy_shift`` are written to ``out`` and returned."""
    net, _ = load_method(model, device)
    name = model_name(model)
    dataset = make_dataset(test, test_slices, mask, sens_dir)
    infos: list[dict] = []
    volumes = ttt_reconstruct(
        net, dataset, device, batch_size, seed, settings, progress=f"{name} test-time training", infos=infos
    )
    for info in infos:
        LOG.info(
            "%s %s: %d steps (best %d), train loss %.4f -> %.4f, held-out loss %.4f -> %.4f",
            name,
            ",".join(f"{f}:{s}" for f, s in zip(info["fname"], info["slice"])),
            info["steps"],
            info["best_step"],
            info["initial_train_loss"],
            info["final_train_loss"],
            info["initial_holdout_loss"],
            info["best_holdout_loss"],
        )
    table = pd.DataFrame(volume_rows(volumes, name, "ttt_anatomy_shift", 0.0)).assign(seed=seed)[ROW_COLUMNS]
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return table
