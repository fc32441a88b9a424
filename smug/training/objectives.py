"""Training objectives of the study, one function per training stage.

Each takes the model, a :class:`smug.data.datasets.Batch` and a noise generator, and
returns a scalar loss. Complex images are compared through their real/imaginary channels (the SMUG
code's MSE), or through magnitudes for SSIM.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from smug.attacks import apply_perturbation, pgd_kspace_attack
from smug.data import Batch
from smug.training.losses import SSIMLoss
from smug.models import SmoothedUnrolling, UnrollTrace, complex_gaussian, denoise_complex
from smug.models.reconstruct import reconstruct
from smug.mri import clamp_complex


def complex_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real and imaginary parts (``nn.MSELoss`` on 2-channel images)."""
    return torch.view_as_real(pred - target).pow(2).mean()


def reconstruction_loss(
    name: str, magnitude: bool = False
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``mse`` or ``l1`` on complex images, or ``ssim`` (1 - SSIM) on magnitudes.

    ``magnitude=True`` compares magnitudes for every loss: a magnitude network (fastMRI's U-Net)
    cannot be asked to predict the target's phase.
    """
    if magnitude:
        complex_loss = reconstruction_loss(name)
        return lambda pred, target: complex_loss(_as_complex(pred.abs()), _as_complex(target.abs()))
    if name == "mse":
        return complex_mse
    if name == "l1":
        return lambda pred, target: torch.view_as_real(pred - target).abs().mean()
    if name == "ssim":
        ssim = SSIMLoss()

        def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            ssim.to(pred.device)
            ref = target.abs().unsqueeze(1)
            return ssim(pred.abs().unsqueeze(1), ref, ref.amax(dim=(1, 2, 3)))

        return ssim_loss
    raise ValueError(f"unknown reconstruction loss {name!r}; valid: mse, l1, ssim")


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    return torch.complex(x, torch.zeros_like(x))


def denoiser_pretraining_loss(
    denoiser: nn.Module, batch: Batch, generator: torch.Generator | None, sigma: float
) -> torch.Tensor:
    """Gaussian denoising of ground truth: ``MSE(D(clamp(x + eta)), x)``, eta ~ N(0, sigma^2)."""
    target = batch.target
    noisy = clamp_complex(target + complex_gaussian(tuple(target.shape), sigma, target, generator))
    return complex_mse(denoise_complex(denoiser, noisy), target)


def score_matching_objective(
    model: nn.Module, batch: Batch, generator: torch.Generator | None
) -> torch.Tensor:
    """A diffusion prior's training (:class:`smug.models.DiffusionReconstructor`): denoising score
    matching on the fully sampled targets; the measurements play no part."""
    return model.training_loss(batch.target, generator)


def end_to_end_loss(
    model: nn.Module,
    batch: Batch,
    generator: torch.Generator | None,
    loss_name: str = "mse",
    magnitude: bool = False,
) -> torch.Tensor:
    """Supervised loss of the final reconstruction (vanilla MoDL, U-Net), plus the backbone's own
    constraint (ISTA-Net+'s symmetry)."""
    trace = _constraint_trace(model)
    recon = reconstruct(model, batch, generator, trace)
    return reconstruction_loss(loss_name, magnitude)(recon, batch.target) + _constraint(model, trace)


def _constraint_trace(model: nn.Module) -> UnrollTrace | None:
    """An empty trace for a backbone trained under a constraint on it, else None (recording a trace
    nobody reads would hold every unroll's intermediates)."""
    return UnrollTrace() if getattr(model, "constrained", False) else None


def _constraint(model: nn.Module, trace: UnrollTrace | None) -> torch.Tensor | float:
    """The backbone's training constraint on a forward trace (ISTA-Net+'s symmetry loss), else 0."""
    if trace is None or not isinstance(model, SmoothedUnrolling):
        return 0.0
    constraint = model.constraint_loss(trace)
    return 0.0 if constraint is None else constraint


def pgd_training_loss(
    model: nn.Module,
    batch: Batch,
    generator: torch.Generator | None,
    eps: float,
    steps: int,
    norm: str = "linf",
    loss_name: str = "mse",
) -> torch.Tensor:
    """Adversarial training (Madry et al.): the loss at a PGD k-space perturbation found for the
    current weights, with the same attack code the evaluation uses."""
    delta = pgd_kspace_attack(
        model, batch, eps, norm=norm, steps=steps, random_start=True, generator=generator
    )
    perturbed = apply_perturbation(batch, delta, "kspace")
    trace = _constraint_trace(model)
    recon = reconstruct(model, perturbed, generator, trace)
    return reconstruction_loss(loss_name)(recon, batch.target) + _constraint(model, trace)


# The unrolled stability loss's target t: the conference code's x_gt, D(x_gt) as a fixed target, or
# D(x_gt) with its gradient kept (the journal code's choice).
STABILITY_TARGETS = ("gt", "denoised_gt", "denoised_gt_grad")


def unrolled_stability_loss(
    model: nn.Module,
    batch: Batch,
    generator: torch.Generator | None,
    target: str = "denoised_gt",
    lambda_rec: float = 1.0,
) -> torch.Tensor:
    """SMUG's fine-tuning objective.

    ``sum_n mean_j ||D(x_n + eta_j) - t||^2 + lambda_rec ||x_N - x_gt||^2`` with ``t = x_gt``
    (conference code, ``target="gt"``), ``t = D(x_gt)`` held fixed (``"denoised_gt"``: noisy inputs
    are asked to land where the clean image lands, not the reverse) or ``t = D(x_gt)`` with its
    gradient (journal code, ``"denoised_gt_grad"``: the target moves towards the noisy outputs too).
    The ``D(x_n + eta_j)`` are the very outputs the smoothed model averages, taken from the forward
    trace, so the stability term costs no extra network evaluations.
    """
    if target not in STABILITY_TARGETS:
        raise ValueError(f"unknown stability target {target!r}; valid: {', '.join(STABILITY_TARGETS)}")
    x_gt = batch.target
    trace = UnrollTrace()
    recon = reconstruct(model, batch, generator, trace)
    if not trace.smoothing:
        raise ValueError("the unrolled stability loss needs a smoothed model (smug or weighted_smug)")
    steps = len(trace.smoothing)
    if target == "gt":
        stable_targets = [x_gt] * steps
    else:
        with torch.set_grad_enabled(target == "denoised_gt_grad" and torch.is_grad_enabled()):
            stable_targets = model.stability_targets(x_gt, steps)
    stability = sum(
        complex_mse(step.noisy_outputs, stable.unsqueeze(0).expand_as(step.noisy_outputs))
        for step, stable in zip(trace.smoothing, stable_targets)
    )
    return stability + lambda_rec * complex_mse(recon, x_gt) + _constraint(model, trace)


def distillation_loss(
    model: nn.Module, batch: Batch, generator: torch.Generator | None, teacher: nn.Module
) -> torch.Tensor:
    """RS-E2E training: match a frozen MoDL's clean reconstruction with the smoothed network."""
    with torch.no_grad():
        reference = reconstruct(teacher, batch, None)
    return complex_mse(reconstruct(model, batch, generator), reference)
