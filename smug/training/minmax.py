"""Min-max adversarial training of a reconstructor against a perturbation generator.

The objective (Raj, Bresler and Li, ICML 2020; the seed report "Robustness of Deep Learning in MRI
Reconstruction") is

    min_theta max_phi  L(f(x0), x) + alpha * L(f(x0 + G(z)), x) - w * max(0, ||G(z)||^2 - eps)

with ``x0 = A^H y`` the zero-filled image, ``f`` the reconstructor (parameters theta), ``G`` the
generator (phi) and the hinge keeping the perturbation's energy near the ``eps`` ball. It is solved
by alternating one ascent step on phi (theta frozen) with one descent step on theta (G's output
detached). The perturbation acts on the image (``domain="image"``, the report) or, the report's
"future work", on the measurements (``domain="kspace"``: ``y + M F S p``, so it lies where the
scanner measures).

:func:`minmax_step` is a self-contained training step; :class:`MinMaxObjective` packages the
generator's half so the shared :func:`smug.training.loop.fit` loop can drive the reconstructor's half.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import torch
from torch import nn

from smug.attacks import DOMAINS, perturb_input
from smug.data import Batch
from smug.training.objectives import complex_mse
from smug.models.reconstruct import reconstruct

ImageLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def hinge_penalty(perturbation: torch.Tensor, eps: float) -> torch.Tensor:
    """``mean_b relu(||p_b||_2^2 - eps)``: zero inside the ball of squared radius ``eps``.

    Args:
        perturbation: real ``(B, C, H, W)`` or complex ``(B, H, W)``; the norm runs over all but
            the batch axis.
        eps: allowed squared norm per sample.
    """
    energy = perturbation.abs().pow(2).reshape(perturbation.shape[0], -1).sum(dim=1)
    return torch.relu(energy - eps).mean()


def generator_ascent_step(
    recon_model: nn.Module,
    generator_net: nn.Module,
    batch: Batch,
    gen_opt: torch.optim.Optimizer,
    latent: torch.Tensor,
    *,
    eps: float,
    penalty_weight: float,
    loss_fn: ImageLoss = complex_mse,
    domain: str = "image",
    noise_gen: torch.Generator | None = None,
) -> dict[str, float]:
    """One ascent step of the generator on ``L(f(x0 + G(z)), x) - w * hinge(G(z), eps)``.

    The reconstructor is frozen in the sense that only the generator's gradients are computed
    (``torch.autograd.grad``), so the reconstructor's ``.grad`` buffers are left untouched.

    Returns:
        ``adv_loss``, ``penalty`` and ``gen_objective`` before the step.
    """
    gen_params = [p for p in generator_net.parameters() if p.requires_grad]
    perturbation = generator_net(latent)
    adv_loss = loss_fn(
        reconstruct(
            recon_model, replace(batch, zero_filled=perturb_input(batch, perturbation, domain)), noise_gen
        ),
        batch.target,
    )
    penalty = hinge_penalty(perturbation, eps)
    objective = adv_loss - penalty_weight * penalty
    grads = torch.autograd.grad(-objective, gen_params, allow_unused=True)
    gen_opt.zero_grad(set_to_none=True)
    for param, grad in zip(gen_params, grads):
        param.grad = grad
    gen_opt.step()
    return {"adv_loss": adv_loss.item(), "penalty": penalty.item(), "gen_objective": objective.item()}


def reconstructor_objective(
    recon_model: nn.Module,
    batch: Batch,
    perturbation: torch.Tensor,
    *,
    alpha: float,
    loss_fn: ImageLoss = complex_mse,
    domain: str = "image",
    noise_gen: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(clean + alpha * adv, clean, adv)`` for a fixed (detached) perturbation."""
    target = batch.target
    clean = loss_fn(reconstruct(recon_model, batch, noise_gen), target)
    adv = loss_fn(
        reconstruct(
            recon_model,
            replace(batch, zero_filled=perturb_input(batch, perturbation.detach(), domain)),
            noise_gen,
        ),
        target,
    )
    return clean + alpha * adv, clean, adv


def minmax_step(
    recon_model: nn.Module,
    generator_net: nn.Module,
    batch: Batch,
    recon_opt: torch.optim.Optimizer,
    gen_opt: torch.optim.Optimizer,
    *,
    eps: float,
    alpha: float = 1.0,
    penalty_weight: float = 1.0,
    loss_fn: ImageLoss = complex_mse,
    domain: str = "image",
    noise_gen: torch.Generator | None = None,
    latent: torch.Tensor | None = None,
) -> dict[str, float]:
    """One alternating step of the min-max game: generator ascent, then reconstructor descent.

    The reconstructor's step uses the generator's output after its update (the stronger
    adversary), recomputed from the same latent codes.

    Args:
        recon_model: reconstruction model with the shared interface.
        generator_net: e.g. :class:`smug.models.generator.PerturbationGenerator`.
        batch: the clean slices, with their ``target``.
        recon_opt, gen_opt: optimisers of the two players' parameters.
        eps: squared-norm budget of the hinge penalty.
        alpha: weight of the adversarial term in the reconstructor's loss.
        penalty_weight: weight of the hinge penalty in the generator's objective.
        loss_fn: ``loss(pred complex (B, H, W), target complex (B, H, W)) -> scalar``.
        domain: "image" or "kspace" (see :func:`perturb_input`).
        noise_gen: draws the latent codes and feeds models with internal randomness.
        latent: ``(B, latent_dim)`` codes to use instead of fresh draws.

    Returns:
        floats ``gen_objective``, ``penalty`` (generator step, before its update), ``clean_loss``,
        ``adv_loss``, ``recon_loss`` (reconstructor step, before its update).
    """
    if latent is None:
        latent = generator_net.sample_latent(batch.kspace.shape[0], noise_gen)
    gen_stats = generator_ascent_step(
        recon_model,
        generator_net,
        batch,
        gen_opt,
        latent,
        eps=eps,
        penalty_weight=penalty_weight,
        loss_fn=loss_fn,
        domain=domain,
        noise_gen=noise_gen,
    )
    with torch.no_grad():
        perturbation = generator_net(latent)
    total, clean, adv = reconstructor_objective(
        recon_model, batch, perturbation, alpha=alpha, loss_fn=loss_fn, domain=domain, noise_gen=noise_gen
    )
    recon_opt.zero_grad(set_to_none=True)
    total.backward()
    recon_opt.step()
    return {
        "gen_objective": gen_stats["gen_objective"],
        "penalty": gen_stats["penalty"],
        "clean_loss": clean.item(),
        "adv_loss": adv.item(),
        "recon_loss": total.item(),
    }


class MinMaxObjective:
    """The min-max game as a ``loss_fn(model, batch, noise_gen)`` for :func:`smug.training.loop.fit`.

    Each call first takes the generator's ascent step with its own AdamW optimiser, then returns
    the reconstructor's loss ``clean + alpha * adv`` (generator output detached) for ``fit`` to
    minimise with its own optimiser. ``fit`` checkpoints only the reconstructor; the caller (the
    training stage, wired in by the lead) must save :meth:`state_dict` beside it and restore it
    with :meth:`load_state_dict` on resume, or a resumed run restarts the generator from scratch.

    Args:
        generator_net: the perturbation generator (already on the training device).
        eps, alpha, penalty_weight, loss_fn, domain: as in :func:`minmax_step`.
        lr, weight_decay, betas: the generator's AdamW settings (report: lr 1e-4, decay 0.01).
    """

    def __init__(
        self,
        generator_net: nn.Module,
        *,
        eps: float,
        alpha: float = 1.0,
        penalty_weight: float = 1.0,
        loss_fn: ImageLoss = complex_mse,
        domain: str = "image",
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
    ):
        if domain not in DOMAINS:
            raise ValueError(f"unknown perturbation domain {domain!r}; valid: {', '.join(DOMAINS)}")
        if domain == "kspace" and getattr(generator_net, "out_chans", 2) != 2:
            raise ValueError("domain='kspace' needs a generator with out_chans=2 (complex perturbations)")
        self.generator_net = generator_net
        self.eps = eps
        self.alpha = alpha
        self.penalty_weight = penalty_weight
        self.loss_fn = loss_fn
        self.domain = domain
        self.optimizer = torch.optim.AdamW(
            [p for p in generator_net.parameters() if p.requires_grad],
            lr=lr,
            weight_decay=weight_decay,
            betas=betas,
        )
        self.last_stats: dict[str, float] = {}

    def __call__(self, model: nn.Module, batch: Batch, noise_gen: torch.Generator | None) -> torch.Tensor:
        self.generator_net.train()
        latent = self.generator_net.sample_latent(batch.kspace.shape[0], noise_gen)
        gen_stats = generator_ascent_step(
            model,
            self.generator_net,
            batch,
            self.optimizer,
            latent,
            eps=self.eps,
            penalty_weight=self.penalty_weight,
            loss_fn=self.loss_fn,
            domain=self.domain,
            noise_gen=noise_gen,
        )
        with torch.no_grad():
            perturbation = self.generator_net(latent)
        total, clean, adv = reconstructor_objective(
            model,
            batch,
            perturbation,
            alpha=self.alpha,
            loss_fn=self.loss_fn,
            domain=self.domain,
            noise_gen=noise_gen,
        )
        self.last_stats = {**gen_stats, "clean_loss": clean.item(), "adv_loss": adv.item()}
        return total

    def state_dict(self) -> dict[str, Any]:
        """The generator's weights and its optimiser's state."""
        return {"generator": self.generator_net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        missing = {"generator", "optimizer"} - set(state)
        if missing:
            raise ValueError(f"min-max objective state lacks {', '.join(sorted(missing))}")
        self.generator_net.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
