"""What SMUG's robustness theorem assumes and bounds, measured on a trained unrolled model.

The theorem bounds how far a smoothed unrolled network's output moves when its measurements do,
assuming a denoiser whose output is bounded. Measured here, per model, on the test slices:

- ``denoiser_output_norm``: the largest ``||D(.)||_2`` (one image, complex) over every unroll and
  every noise draw, on the clean measurements (level 0) and on the worst-case perturbations of each
  radius (level = the radius); beside it ``target_norm``, the largest ``||x_gt||``, for scale.
- ``sensitivity_random`` and ``sensitivity_worst``: ``||f(y + e) - f(y)|| / ||e||`` for ``e`` random
  Gaussian on the sampled k-space and for ``e`` found by l2 PGD maximising ``||f(y + e) - f(y)||``,
  both with ``||e|| = radius * ||y||`` (the level); statistics ``mean`` and ``max`` over the slices.
- ``weight_max`` and ``weight_ess`` (Weighted SMUG): the largest weight times M (1 = uniform) and the
  effective sample size ``1 / sum_j w_j^2`` over M (1 = uniform), averaged over unrolls and slices.

A smoothed network's output depends on its noise draws; the sensitivity compares ``f(y + e)`` with
``f(y)`` under the SAME draws (:class:`CommonNoise`), so it measures the function the M-sample
estimator computes rather than the spread between two draws (which alone would make it positive at
``e = 0``).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterable, Sequence

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from smug.attacks import apply_perturbation, pgd_kspace_attack, random_perturbation
from smug.data import Batch, collate, make_dataset
from smug.utils import atomic_path
from smug.models import load_method, MoDL, RSE2E, UnrollTrace
from smug.study import model_name
from smug.models.reconstruct import reconstruct
from smug.mri import MRIPhysics

LOG = logging.getLogger(__name__)

COLUMNS = ["model", "seed", "quantity", "level", "statistic", "value", "n_slices"]


class CommonNoise(nn.Module):
    """A randomised model with its noise fixed: every call draws from a generator seeded with
    ``seed``, so ``f`` becomes a deterministic function of its input (common random numbers)."""

    randomised = False

    def __init__(self, model: nn.Module, seed: int):
        super().__init__()
        self.model = model
        self.seed = seed

    def forward(self, kspace: torch.Tensor, physics: MRIPhysics, **options) -> torch.Tensor:
        """The wrapped model's reconstruction, its noise drawn from the fixed seed; ``options``
        (``trace``, ``num_unrolls``) reach it unchanged."""
        fixed = torch.Generator(device=kspace.device).manual_seed(self.seed)
        return self.model(kspace, physics, generator=fixed, **options)


def image_norms(images: torch.Tensor) -> torch.Tensor:
    """l2 norm of each complex image over its last two dimensions: ``(..., H, W) -> (...)``."""
    return torch.linalg.vector_norm(images, dim=(-2, -1))


def traced(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, UnrollTrace]:
    """The reconstruction of ``batch`` and its unroll trace (``model`` must fix its own noise)."""
    trace = UnrollTrace()
    with torch.no_grad():
        recon = reconstruct(model, batch, None, trace)
    return recon, trace


def largest_denoised_norm(trace: UnrollTrace) -> float:
    """The largest ``||D(.)||`` of one image over every unroll and noise draw of a trace."""
    if not trace.denoised:
        raise ValueError("the model recorded no denoiser outputs: is it an unrolled network?")
    return max(float(image_norms(outputs).max()) for outputs in trace.denoised)


def weight_spread(trace: UnrollTrace) -> dict[str, float]:
    """``weight_max`` (largest weight times M) and ``weight_ess`` (effective sample size over M),
    averaged over unrolls and slices; empty for a model without learned weights."""
    steps = [step.weights for step in trace.smoothing if step.weights is not None]
    if not steps:
        return {}
    weights = torch.stack(steps)  # (N, M, B), each (M,) column summing to 1
    m = weights.shape[1]
    return {
        "weight_max": float((weights.amax(1) * m).mean()),
        "weight_ess": float((1.0 / weights.pow(2).sum(1) / m).mean()),
    }


def sensitivity(
    model: nn.Module, batch: Batch, delta: torch.Tensor, reference: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``||f(y + delta) - f(y)|| / ||delta||`` per slice ``(B,)``, and the perturbed pass's trace
    maximum output norm per call (a 0-d tensor)."""
    perturbed, trace = traced(model, apply_perturbation(batch, delta, "kspace"))
    change = image_norms(perturbed - reference)
    size = torch.linalg.vector_norm(delta.flatten(1), dim=1)
    return change / size.clamp_min(1e-30), torch.tensor(largest_denoised_norm(trace))


def diagnose(
    model: nn.Module,
    batches: Iterable[Batch],
    radii: Iterable[float],
    steps: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Every quantity of the module docstring over ``batches``, as rows of :data:`COLUMNS` (``model``
    left empty for the caller).

    Args:
        model: a trained unrolled network (MoDL, SMUG, Weighted SMUG, RS-E2E), in eval mode.
        batches: the test slices.
        radii: relative l2 radii ``||e|| / ||y||`` of the perturbations.
        steps: PGD steps of the worst-case perturbation (from a random point of the ball).
        seed: seeds the model's noise (fixed across all passes) and the perturbations.
    """
    if not isinstance(model, (MoDL, RSE2E)):
        raise ValueError(
            f"diagnostics need an unrolled network (MoDL, SMUG, RS-E2E), got {type(model).__name__}"
        )
    radii = [float(r) for r in radii]
    if not radii or any(not (math.isfinite(r) and r > 0) for r in radii):
        raise ValueError(f"radii must be positive and finite, got {radii}")
    fixed = CommonNoise(model.eval(), seed)
    generator = None  # the perturbations' source, on the data's device
    norms = {0.0: [], **{r: [] for r in radii}}
    targets, spreads, ratios = [], [], {(kind, r): [] for kind in ("random", "worst") for r in radii}
    for batch in batches:
        if generator is None:
            generator = torch.Generator(device=batch.kspace.device).manual_seed(seed + 1)
        reference, trace = traced(fixed, batch)
        norms[0.0].append(largest_denoised_norm(trace))
        targets.append(float(image_norms(batch.target).max()))
        spread = weight_spread(trace)
        if spread:
            spreads.append((spread, batch.kspace.shape[0]))
        for r in radii:
            random_delta = random_perturbation(
                batch, r, norm="l2", domain="kspace", relative=True, generator=generator
            )
            ratio, _ = sensitivity(fixed, batch, random_delta, reference)
            ratios[("random", r)].append(ratio)
            worst_delta = pgd_kspace_attack(
                fixed,
                batch,
                r,
                norm="l2",
                steps=steps,
                relative=True,
                loss_target="clean",
                generator=generator,
            )
            ratio, norm = sensitivity(fixed, batch, worst_delta, reference)
            ratios[("worst", r)].append(ratio)
            norms[r].append(float(norm))
    n_slices = sum(len(x) for x in ratios[("random", radii[0])])
    rows = [_row("target_norm", 0.0, "max", max(targets), n_slices)]
    rows += [
        _row("denoiser_output_norm", level, "max", max(values), n_slices) for level, values in norms.items()
    ]
    for (kind, r), values in ratios.items():
        stacked = torch.cat(values)
        rows.append(_row(f"sensitivity_{kind}", r, "mean", float(stacked.mean()), n_slices))
        rows.append(_row(f"sensitivity_{kind}", r, "max", float(stacked.max()), n_slices))
    if spreads:
        total = sum(count for _, count in spreads)
        for key in spreads[0][0]:
            value = sum(spread[key] * count for spread, count in spreads) / total
            rows.append(_row(key, 0.0, "mean", value, n_slices))
    return rows


def _row(quantity: str, level: float, statistic: str, value: float, n_slices: int) -> dict[str, Any]:
    return {
        "model": "",
        "quantity": quantity,
        "level": level,
        "statistic": statistic,
        "value": value,
        "n_slices": n_slices,
    }


def diagnose_file(
    *,
    model: str,
    test: Sequence[str],
    mask: str,
    sens_dir: str | Sequence[str] | None,
    test_slices: int | None,
    radii: Sequence[float],
    steps: int,
    batch_size: int,
    seed: int,
    out: str,
    device: torch.device,
) -> pd.DataFrame:
    """:func:`diagnose` of a saved model on test volumes, written to ``out`` (CSV of :data:`COLUMNS`,
    the model named by its folder) atomically."""
    net, _ = load_method(model, device)
    name = model_name(model)
    dataset = make_dataset(test, test_slices, mask, sens_dir)
    batches = (
        batch.to(device)
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    )
    rows = diagnose(net, batches, radii, steps, seed)
    table = pd.DataFrame([{**row, "model": name, "seed": seed} for row in rows], columns=COLUMNS)
    for row in table.itertuples():
        LOG.info("%s: %s at %g, %s = %.4g", name, row.quantity, row.level, row.statistic, row.value)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table
