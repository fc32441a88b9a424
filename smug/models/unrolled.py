"""What every unrolled backbone (MoDL, E2E-VarNet, ISTA-Net+) shares: its regulariser, smoothed or not.

An unrolled network alternates a learned regulariser with a step towards the measurements. SMUG
replaces the regulariser of every unroll (cascade, phase) by its randomised smoothing; Weighted SMUG
learns the average's weights. :class:`SmoothedUnrolling` holds those settings once, so MoDL,
E2E-VarNet and ISTA-Net+ take them alike, and records what the unrolled stability loss needs in an
:class:`UnrollTrace`.

A backbone's *regulariser* at unroll ``n`` is a map of 2-channel images ``(N, 2, H, W) -> (N, 2, H, W)``
(:meth:`SmoothedUnrolling.regularizer`): MoDL's shared denoiser, a VarNet cascade's U-Net (applied to
the coil-combined image), an ISTA-Net+ phase's proximal step. Smoothing it averages its outputs over
Gaussian perturbations of its input (:func:`smug.models.smoothing.smoothed_denoise`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from smug.models.smoothing import (
    SmoothingTrace,
    check_weighting,
    checkpoint_counted_once,
    denoise_complex,
    refuse_chunked_batch_statistics,
    smoothed_denoise,
)

Regularizer = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class UnrollTrace:
    """Intermediate results of one forward pass, for the unrolled stability loss.

    Attributes:
        inputs: the image entering each unroll's regulariser, complex ``(B, H, W)`` each.
        smoothing: per-unroll :class:`SmoothingTrace` (empty for a network without smoothing).
        denoised: per-unroll regulariser outputs, complex ``(M, B, H, W)``: every noisy copy's for a
            smoothed network, ``M = 1`` otherwise (what the bounded-output assumption bounds).
        symmetry: ISTA-Net+'s per-phase symmetry residuals ``F~(F(u)) - u``, real ``(N, C, H, W)``
            (empty for the other backbones).
    """

    inputs: list[torch.Tensor] = field(default_factory=list)
    smoothing: list[SmoothingTrace] = field(default_factory=list)
    denoised: list[torch.Tensor] = field(default_factory=list)
    symmetry: list[torch.Tensor] = field(default_factory=list)

    def extend(self, other: UnrollTrace) -> None:
        """Append another trace's records (a checkpointed unroll's) to this one's."""
        self.inputs += other.inputs
        self.smoothing += other.smoothing
        self.denoised += other.denoised
        self.symmetry += other.symmetry


class SmoothedUnrolling(nn.Module):
    """Base of the unrolled backbones: the smoothing of their regulariser at every unroll.

    A subclass calls :meth:`init_smoothing` in its ``__init__``, implements :meth:`regularizer`,
    and regularises each unroll's image through :meth:`regularize`.

    Smoothing settings (:meth:`init_smoothing`):
        smoothing: ``none`` (the vanilla backbone), ``smug`` or ``weighted`` (Weighted SMUG).
        sigma: smoothing noise standard deviation.
        num_samples: draws M per unroll, denoised in one batched pass.
        weight_encoder: Weighted SMUG's scorer (required for ``smoothing="weighted"``).
        weight_scores, weight_normalisation: how Weighted SMUG weighs its samples
            (:func:`smug.models.smoothing.smoothed_denoise`).
    """

    SMOOTHING = ("none", "smug", "weighted")
    # Whether one regulariser serves every unroll (MoDL's shared denoiser): the stability loss then
    # computes its target once.
    shared_regularizer = False

    def init_smoothing(
        self,
        smoothing: str = "none",
        sigma: float = 0.01,
        num_samples: int = 10,
        weight_encoder: nn.Module | None = None,
        weight_scores: str = "denoised",
        weight_normalisation: str = "sum",
    ) -> None:
        if smoothing not in self.SMOOTHING:
            raise ValueError(f"unknown smoothing {smoothing!r}; valid: {', '.join(self.SMOOTHING)}")
        if smoothing == "weighted" and weight_encoder is None:
            raise ValueError("smoothing='weighted' needs a weight_encoder")
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        check_weighting(weight_scores, weight_normalisation)
        self.weight_encoder = weight_encoder if smoothing == "weighted" else None
        self.smoothing = smoothing
        self.sigma = sigma
        self.num_samples = num_samples
        self.weight_scores = weight_scores
        self.weight_normalisation = weight_normalisation
        # Memory options (set_memory): they change what autograd keeps, not the result.
        self.checkpoint_unrolls = False
        self.sample_chunk: int | None = None

    @property
    def draws_chunked(self) -> bool:
        """Whether the smoothing denoises its M draws in chunks (``sample_chunk``), each recomputed in
        the backward pass. Its unrolls are then not checkpointed even where
        :attr:`checkpoint_unrolls` is set: recomputing the unroll around chunks that recompute
        themselves would compute the regulariser three times instead of twice; what else the unroll
        keeps, MoDL's CG record, is checkpointed on its own (:meth:`checkpoint_rest`). Measured:
        SMUG at 128x128, N = 8, M = 10, chunks of 2 keep 453 MiB in 1.18x the plain step's time."""
        return (
            self.smoothing != "none"
            and self.sample_chunk is not None
            and self.sample_chunk < self.num_samples
        )

    @property
    def randomised(self) -> bool:
        """Whether the output depends on random draws (attacks then average over them, EOT)."""
        return self.smoothing != "none"

    def regularizer(self, step: int) -> Regularizer:
        """The regulariser of unroll ``step``, on 2-channel images ``(N, 2, H, W)``."""
        raise NotImplementedError

    def regularize(
        self,
        step: int,
        image: torch.Tensor,
        generator: torch.Generator | None,
        trace: UnrollTrace | None = None,
        regularizer: Regularizer | None = None,
    ) -> torch.Tensor:
        """Unroll ``step``'s regulariser on the complex ``(B, H, W)`` image, or its (weighted)
        randomised smoothing; ``trace`` records its input and outputs. ``regularizer`` stands for
        :meth:`regularizer` where the backbone records more of it (ISTA-Net+'s symmetry)."""
        regularizer = self.regularizer(step) if regularizer is None else regularizer
        if self.draws_chunked:
            # Weighted SMUG's encoder scores every draw at once: its batch statistics are whole
            refuse_chunked_batch_statistics(self, f"{type(self).__name__}'s regulariser", self.weight_encoder)
        if self.smoothing == "none":
            out, smoothing_trace = denoise_complex(regularizer, image), None
        else:
            out, smoothing_trace = smoothed_denoise(
                regularizer,
                image,
                self.sigma,
                self.num_samples,
                generator,
                self.weight_encoder,
                weight_scores=self.weight_scores,
                weight_normalisation=self.weight_normalisation,
                sample_chunk=self.sample_chunk,
            )
        if trace is not None:
            trace.inputs.append(image)
            if smoothing_trace is not None:
                trace.smoothing.append(smoothing_trace)
            trace.denoised.append(
                out.unsqueeze(0) if smoothing_trace is None else smoothing_trace.noisy_outputs
            )
        return out

    def unroll(
        self,
        body: Callable[..., tuple[torch.Tensor, ...]],
        state: tuple[torch.Tensor, ...],
        generator: torch.Generator | None,
        trace: UnrollTrace | None,
    ) -> tuple[torch.Tensor, ...]:
        """One unroll, ``body(state, generator, trace) -> next state``, checkpointed under autograd
        when :attr:`checkpoint_unrolls` is set (and the draws are not chunked,
        :attr:`draws_chunked`): its activations (the regulariser's, the CG
        iterations') are recomputed in the backward pass instead of kept, so memory no longer grows
        with the number of unrolls. The recomputation redraws the same smoothing noise (it replays
        a copy of ``generator`` from the state it had; the global RNG is restored by
        :func:`torch.utils.checkpoint.checkpoint`) and records nothing twice in ``trace``."""
        if not (self.checkpoint_unrolls and torch.is_grad_enabled()) or self.draws_chunked:
            return body(state, generator, trace)
        start = generator.get_state() if generator is not None else None

        def replay(*tensors: torch.Tensor):
            copy_ = None
            if generator is not None:
                copy_ = torch.Generator(device=generator.device)
                copy_.set_state(start)
            local = UnrollTrace() if trace is not None else None
            return body(tensors, copy_, local), copy_, local

        # The recomputation normalises by the same batch statistics, but must not count them again in
        # a batch normalisation's running averages (the weight encoder's, DnCNN's).
        out, advanced, local = checkpoint_counted_once(replay, self, *state)
        if generator is not None:
            generator.set_state(advanced.get_state())
        if trace is not None:
            trace.extend(local)
        return out

    def checkpoint_rest(self, function: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
        """``function(*args, **kwargs)``, a step of an unroll besides its regulariser (MoDL's CG
        solve), checkpointed where the unroll would have been but is not because its draws are
        chunked (:attr:`checkpoint_unrolls` with :attr:`draws_chunked`): its autograd record, every
        CG iteration's, is recomputed in the backward pass instead of kept for every unroll. Exact:
        the step draws no noise and normalises by no batch statistics. ISTA-Net+'s gradient step and
        E2E-VarNet's soft data consistency are not wrapped: each applies a linear operator once, so
        its record is a few image- or coil-sized tensors per unroll, not an iteration record."""
        if self.checkpoint_unrolls and self.draws_chunked and torch.is_grad_enabled():
            return checkpoint(function, *args, use_reentrant=False, **kwargs)
        return function(*args, **kwargs)

    def stability_targets(self, image: torch.Tensor, steps: int) -> list[torch.Tensor]:
        """Each of the first ``steps`` unrolls' regulariser on the complex ``(B, H, W)`` image (the
        unrolled stability loss's ``D(x_gt)``), computed once when one regulariser serves all."""
        if self.shared_regularizer:
            return [denoise_complex(self.regularizer(0), image)] * steps
        return [denoise_complex(self.regularizer(step), image) for step in range(steps)]

    # Whether the backbone trains under a constraint on its forward trace (ISTA-Net+'s symmetry), so
    # that the supervised objectives record a trace for it and for no other backbone.
    constrained = False

    def constraint_loss(self, trace: UnrollTrace) -> torch.Tensor | None:
        """The backbone's own training constraint on a forward trace (ISTA-Net+'s symmetry), or None."""
        return None


def set_memory(
    model: nn.Module, checkpoint_unrolls: bool = False, sample_chunk: int | None = None
) -> nn.Module:
    """Bound the memory of every unrolled network in ``model`` (itself, or RS-E2E's): checkpoint
    each unroll (:meth:`SmoothedUnrolling.unroll`) and denoise the smoothing's M draws
    ``sample_chunk`` at a time, each chunk recomputed in the backward pass
    (:func:`smug.models.smoothing.denoise_in_chunks`; a smoothed network with chunks does not
    checkpoint its unrolls as well, :attr:`SmoothedUnrolling.draws_chunked`); RS-E2E (any module
    with a ``sample_chunk`` attribute) reconstructs its M noisy copies that many at a time, each
    chunk's unrolls checkpointed or, without ``checkpoint_unrolls``, each chunk recomputed as a whole.
    Neither changes the result or its gradients beyond float rounding; both trade memory for
    recomputation. Returns ``model``."""
    if sample_chunk is not None and sample_chunk < 1:
        raise ValueError(f"sample_chunk must be at least 1 (or None), got {sample_chunk}")
    for module in model.modules():
        if isinstance(module, SmoothedUnrolling):
            module.checkpoint_unrolls = bool(checkpoint_unrolls)
            module.sample_chunk = sample_chunk
        elif hasattr(module, "sample_chunk"):  # RS-E2E: its M noisy copies of the whole network
            module.sample_chunk = sample_chunk
    return model


def without_smoothing(model: nn.Module) -> nn.Module:
    """The network a smoothed model smooths (the SMUG conference attack's surrogate).

    A backbone with a smoothed regulariser becomes the same network with its plain regulariser (the
    weights are shared, not copied); RS-E2E gives the network it averages; any other model is
    returned as it is.
    """
    inner = getattr(model, "smoothed_network", None)
    if inner is not None:
        return inner
    if isinstance(model, SmoothedUnrolling) and model.smoothing != "none":
        plain = copy.copy(model)  # a shallow copy shares every parameter and buffer
        plain.smoothing = "none"
        return plain
    return model
