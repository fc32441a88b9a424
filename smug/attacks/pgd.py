"""Projected gradient ascent on the reconstruction error, in k-space or on the zero-filled image,
white-box through the whole model (data consistency included) and, for randomised models, with
the gradient averaged over ``eot_samples`` noise draws (expectation over transformation): SMUG
and RS-E2E are attacked with their noise active."""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import nn

from smug.data import Batch
from smug.models.reconstruct import reconstruct
from smug.attacks.perturbations import (
    NORMS,
    _TINY,
    _check_ball,
    _check_choice,
    _per_sample,
    _per_sample_norm,
    _random_point,
    _support,
    apply_perturbation,
    ball_radius,
    is_randomised,
    perturbation_shape,
    project,
    reconstruct_perturbed,
)

# What the attack's loss compares the reconstruction with: the ground truth, or the clean input's
# reconstruction.
LOSS_TARGETS = ("gt", "clean")


def default_step_size(eps: float, norm: str, steps: int) -> float:
    """PGD's default step: ``eps / 3`` for linf (the SMUG code), ``2.5 * eps / steps`` for l2."""
    _check_choice(norm, NORMS, "norm")
    if norm == "linf":
        return eps / 3
    return 2.5 * eps / max(steps, 1)


def attack_gradient(
    model: nn.Module,
    batch: Batch,
    delta: torch.Tensor,
    target: torch.Tensor,
    domain: str = "kspace",
    eot_samples: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the attack loss ``||f(apply(y, delta)) - target||^2`` with respect to ``delta``.

    The loss is summed over pixels (and real/imaginary parts) per sample and over the batch; in eval
    mode the samples do not interact, so each sample's gradient is that of its own loss. For a
    randomised model the loss and gradient are averaged over ``eot_samples`` passes, each drawing
    fresh noise from ``generator``. Only ``delta`` is differentiated (``torch.autograd.grad``), so the
    parameters' ``.grad`` are never touched; the model's mode is the caller's.

    Args:
        model: reconstruction model (see :mod:`smug.models.modl`).
        batch: the clean batch.
        delta: complex ``(B, C, H, W)`` (kspace) or ``(B, H, W)`` (image).
        target: complex ``(B, H, W)``.
        domain: "kspace" or "image".
        eot_samples: forward passes averaged.
        generator: the model's noise source.

    Returns:
        ``(gradient, loss)``: complex like ``delta`` with real part ``dL/dRe delta`` and imaginary
        part ``dL/dIm delta``, and the ``(B,)`` loss, both averaged over the passes and detached.
    """
    if eot_samples < 1:
        raise ValueError(f"eot_samples must be at least 1, got {eot_samples}")
    # Differentiating a real view keeps the gradient convention explicit (d/dRe, d/dIm), whatever
    # autograd's convention for complex leaves.
    delta_real = torch.view_as_real(delta.detach()).clone().requires_grad_(True)
    grad_sum = torch.zeros_like(delta_real)
    loss_sum = torch.zeros(delta.shape[0], dtype=delta_real.dtype, device=delta.device)
    with torch.enable_grad():
        for _ in range(eot_samples):
            perturbed = apply_perturbation(batch, torch.view_as_complex(delta_real), domain)
            recon = reconstruct(model, perturbed, generator)
            loss = _squared_error(recon, target)
            (grad,) = torch.autograd.grad(loss.sum(), delta_real)
            grad_sum += grad
            loss_sum += loss.detach()
    return torch.view_as_complex(grad_sum / eot_samples), loss_sum / eot_samples


def attack_loss(
    model: nn.Module,
    batch: Batch,
    delta: torch.Tensor | None,
    target: torch.Tensor,
    domain: str = "kspace",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The attack loss ``||f(apply(y, delta)) - target||^2`` per sample, ``(B,)``, without gradients."""
    with torch.no_grad():
        return _squared_error(reconstruct_perturbed(model, batch, delta, domain, generator), target)


def attack_target(
    model: nn.Module,
    batch: Batch,
    loss_target: str,
    eot_samples: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """What the attack pushes the reconstruction away from, complex ``(B, H, W)``.

    "gt": ``batch.target``. "clean": the clean reconstruction ``f(y)`` (Darestani et al.),
    averaged over ``eot_samples`` passes for a randomised model.
    """
    _check_choice(loss_target, LOSS_TARGETS, "loss_target")
    if loss_target == "gt":
        if batch.target is None:
            raise ValueError("loss_target 'gt' needs the batch's 'target', and this batch has none")
        return batch.target
    with torch.no_grad():
        passes = [reconstruct(model, batch, generator) for _ in range(eot_samples)]
    return torch.stack(passes).mean(0)


def pgd_kspace_attack(
    model: nn.Module,
    batch: Batch,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    loss_target: str = "gt",
    eot_samples: int = 1,
    relative: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """White-box PGD on the sampled k-space, maximising ``||f(y + M delta) - t||^2``.

    Args:
        model: reconstruction model; run in eval mode during the attack (its modes are restored
            afterwards), parameters never modified.
        batch: clean batch (``kspace``, ``mask``, ``target`` for ``loss_target="gt"``, ``sens_maps``).
        eps: ball radius: bound on ``|Re|`` and ``|Im|`` (linf) or on the per-sample norm (l2), or the
            fraction of ``||y||`` with ``relative=True``.
        norm: "linf" (signed-gradient steps on Re and Im) or "l2" (normalised-gradient steps).
        steps: PGD iterations.
        step_size: None for :func:`default_step_size`; like ``eps``, relative to ``||y||`` when
            ``relative=True``.
        random_start: start uniformly inside the ball (linf) or at a random point of it (l2). With
            ``loss_target="clean"`` the loss is stationary at ``delta = 0``, so PGD needs it.
        loss_target: "gt" (ground truth) or "clean" (the clean reconstruction).
        eot_samples: forward passes averaged per gradient (randomised models).
        relative: l2 radius ``eps * ||y||_2`` per sample (Darestani et al.); l2 only.
        generator: source of the random start and of the model's noise.

    Returns:
        complex ``(B, C, H, W)`` perturbation, zero off the mask, detached.
    """
    return _pgd(
        model,
        batch,
        "kspace",
        eps,
        norm,
        steps,
        step_size,
        random_start,
        loss_target,
        eot_samples,
        relative,
        generator,
    )


def pgd_image_attack(
    model: nn.Module,
    batch: Batch,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    loss_target: str = "gt",
    eot_samples: int = 1,
    generator: torch.Generator | None = None,
    relative: bool = False,
) -> torch.Tensor:
    """PGD on the zero-filled image ``A^H y`` (the SMUG conference attack: linf, eps in {0.2, 0.5, 1, 2}/255).

    Arguments as :func:`pgd_kspace_attack`; ``relative=True`` scales an l2 radius by ``||A^H y||``.

    Returns:
        complex ``(B, H, W)`` perturbation of ``A^H y``, detached.
    """
    return _pgd(
        model,
        batch,
        "image",
        eps,
        norm,
        steps,
        step_size,
        random_start,
        loss_target,
        eot_samples,
        relative,
        generator,
    )


def _pgd(
    model: nn.Module,
    batch: Batch,
    domain: str,
    eps: float,
    norm: str,
    steps: int,
    step_size: float | None,
    random_start: bool,
    loss_target: str,
    eot_samples: int,
    relative: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    _check_ball(eps, norm, relative)
    _check_choice(loss_target, LOSS_TARGETS, "loss_target")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps}")
    if eot_samples < 1:
        raise ValueError(f"eot_samples must be at least 1, got {eot_samples}")
    if step_size is None:
        step_size = default_step_size(eps, norm, steps)
    if not (math.isfinite(step_size) and step_size >= 0):
        raise ValueError(f"step_size must be finite and non-negative, got {step_size}")

    # A deterministic model gives the same gradient on every pass: averaging would only cost time.
    eot_samples = eot_samples if is_randomised(model) else 1
    with _eval_mode(model):
        target = attack_target(model, batch, loss_target, eot_samples, generator)
        support = _support(batch, domain)
        radius = ball_radius(batch, eps, domain, relative)
        step = radius * (step_size / eps) if relative and eps > 0 else torch.full_like(radius, step_size)
        if random_start:
            delta = _random_point(batch, radius, norm, domain, generator)
        else:
            delta = torch.zeros(
                perturbation_shape(batch, domain), dtype=batch.kspace.dtype, device=radius.device
            )
        for _ in range(int(steps)):
            grad, _ = attack_gradient(model, batch, delta, target, domain, eot_samples, generator)
            if norm == "linf":
                direction = torch.complex(grad.real.sign(), grad.imag.sign())
            else:
                direction = grad / _per_sample(_per_sample_norm(grad).clamp_min(_TINY), grad.ndim)
            delta = project(delta + _per_sample(step, delta.ndim) * direction, radius, norm, support)
    return delta.detach()


def _squared_error(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||recon - target||^2`` per sample over real and imaginary parts, ``(B,)``."""
    if recon.shape != target.shape:
        raise ValueError(
            f"reconstruction {tuple(recon.shape)} and attack target {tuple(target.shape)} differ"
        )
    return torch.view_as_real(recon - target).pow(2).flatten(1).sum(1)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the attack, then every submodule's own mode back (a training loop's model may
    hold frozen eval-mode parts)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
