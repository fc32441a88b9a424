"""The untrained-network baseline: a ConvDecoder fitted to one slice's measurements alone.

Following Darestani and Heckel ("Accelerated MRI with un-trained neural networks"), a convolutional
decoder maps a fixed random input to an image; its weights are fitted, from scratch for every slice,
so that the image's k-space matches the measured columns. The architecture's bias towards smooth,
natural images fills in the unmeasured columns. No training data are involved, which makes it the
study's reference point for robustness: there is nothing learned to attack.

Early stopping is self-supervised: a few sampled columns are held out of the fit, and the iterate
that predicts them best is returned (:mod:`smug.mri.consistency`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from smug.mri import MRIPhysics, adjoint_operator
from smug.mri import kspace_consistency_loss, split_mask
from smug.mri import channels_to_complex


class ConvDecoder(nn.Module):
    """Convolutional decoder from a fixed random input to a 2-channel (real, imaginary) image.

    ``num_layers`` blocks of [bilinear upsampling -> 3x3 conv -> ReLU -> BatchNorm], whose spatial
    sizes grow geometrically from ``input_size`` to ``output_size``, then a 1x1 conv to 2 channels.
    Convolutions have no bias (BatchNorm supplies the offsets), as in the original ConvDecoder.

    Args:
        output_size: ``(H, W)`` of the image.
        channels: feature channels of every block.
        num_layers: number of upsampling blocks, at least 1.
        input_size: spatial size of the random input; default about ``output_size / 2**num_layers``
            (at least 4, at most ``output_size``).
        generator: CPU generator for the input and the weights (fixed seed -> same network).
    """

    def __init__(
        self,
        output_size: tuple[int, int],
        channels: int,
        num_layers: int,
        input_size: tuple[int, int] | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        out_h, out_w = int(output_size[0]), int(output_size[1])
        if out_h < 1 or out_w < 1 or channels < 1 or num_layers < 1:
            raise ValueError(
                f"ConvDecoder needs positive output_size, channels and num_layers; got "
                f"{output_size}, {channels}, {num_layers}"
            )
        if input_size is None:
            input_size = tuple(min(d, max(4, math.ceil(d / 2**num_layers))) for d in (out_h, out_w))
        in_h, in_w = int(input_size[0]), int(input_size[1])
        if not (0 < in_h <= out_h and 0 < in_w <= out_w):
            raise ValueError(
                f"input_size {input_size} must be positive and at most output_size {output_size}"
            )
        self.output_size = (out_h, out_w)
        self.sizes = [
            (_geometric_step(in_h, out_h, i, num_layers), _geometric_step(in_w, out_w, i, num_layers))
            for i in range(1, num_layers + 1)
        ]
        blocks = []
        for size in self.sizes:
            blocks += [
                nn.Upsample(size=size, mode="bilinear", align_corners=False),
                nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
                nn.ReLU(),
                nn.BatchNorm2d(channels),
            ]
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(channels, 2, kernel_size=1, bias=False)
        # Uniform in [0, 0.1), the deep decoder's input distribution; a buffer so it follows .to().
        self.register_buffer("net_input", 0.1 * torch.rand((1, channels, in_h, in_w), generator=generator))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # PyTorch's default conv initialisation, but from ``generator`` rather than the
                # global RNG so that a seed alone fixes the network.
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)

    def forward(self) -> torch.Tensor:
        """The current image, real ``(1, 2, H, W)`` (real and imaginary channels)."""
        return self.to_image(self.blocks(self.net_input))


def _geometric_step(start: int, stop: int, step: int, num_steps: int) -> int:
    if step == num_steps:
        return stop
    return max(1, round(start * (stop / start) ** (step / num_steps)))


def fit_untrained(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    sens_maps: torch.Tensor | None = None,
    *,
    num_iters: int = 1000,
    lr: float = 0.008,
    channels: int = 64,
    num_layers: int = 6,
    holdout_fraction: float = 0.05,
    patience: int = 100,
    seed: int = 0,
    check_every: int = 1,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Fit a fresh :class:`ConvDecoder` to one slice's measured k-space; return the best iterate.

    The sampled columns are split (:func:`smug.mri.consistency.split_mask`) into training columns,
    whose :func:`~smug.mri.consistency.kspace_consistency_loss` Adam minimises, and held-out
    columns, whose loss is checked every ``check_every`` iterations. The image with the lowest
    held-out loss is kept, and fitting stops after ``patience`` checks in a row without a new best.
    With ``holdout_fraction=0`` nothing is held out and the last iterate is returned.

    The measurements are rescaled so that the freshly initialised network's image has the norm of
    the zero-filled image, which lets one learning rate serve data of any intensity scale; the
    returned image is scaled back. The relative loss is unaffected by that scale.

    Gradients are enabled inside, also when called under ``torch.no_grad()`` or
    ``torch.inference_mode()``; the returned image is detached from the inputs.

    Args:
        kspace: measured k-space of one slice, complex ``(1, C, H, W)`` (``C = 1`` single-coil).
        mask: column mask ``(W,)`` or ``(1, W)`` of the measured columns.
        sens_maps: complex ``(1, C, H, W)``, or None for single-coil.
        num_iters: maximum number of Adam steps.
        lr: Adam learning rate.
        channels, num_layers: ConvDecoder size.
        holdout_fraction: fraction of the sampled columns held out for early stopping, in [0, 1).
        patience: checks without improvement of the held-out loss before stopping, at least 1.
        seed: fixes the column split, the random input and the initial weights.
        check_every: iterations between held-out checks.

    Returns:
        ``(image, info)``: complex ``(H, W)`` image, and a dict with ``iterations`` (Adam steps
        taken), ``best_iteration`` (steps taken when the returned image was produced),
        ``best_holdout_loss`` (None without a held-out set), ``initial_holdout_loss``,
        ``final_holdout_loss``, ``initial_train_loss``, ``final_train_loss``, ``stopped_early``
        and ``holdout_columns`` (the held-out column indices).
    """
    _check_slice_inputs(kspace, mask, sens_maps)
    _check_settings(num_iters, lr, channels, num_layers, holdout_fraction, patience, check_every)
    with torch.inference_mode(False), torch.enable_grad():
        # Clones made outside inference mode, so autograd may save them for the backward pass.
        kspace = kspace.detach().clone()
        sens_maps = None if sens_maps is None else sens_maps.detach().clone()
        mask = (mask.reshape(-1) != 0).clone()
        return _fit(
            kspace,
            mask,
            sens_maps,
            num_iters,
            lr,
            channels,
            num_layers,
            holdout_fraction,
            patience,
            seed,
            check_every,
        )


def _fit(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    sens_maps: torch.Tensor | None,
    num_iters: int,
    lr: float,
    channels: int,
    num_layers: int,
    holdout_fraction: float,
    patience: int,
    seed: int,
    check_every: int,
) -> tuple[torch.Tensor, dict[str, Any]]:
    generator = torch.Generator().manual_seed(int(seed))
    train_mask, holdout_mask = split_mask(mask, holdout_fraction, generator)
    has_holdout = bool(holdout_mask.any())
    net = ConvDecoder(kspace.shape[-2:], channels, num_layers, generator=generator)
    net = net.to(device=kspace.device, dtype=kspace.real.dtype).train()

    zero_filled_norm = torch.linalg.vector_norm(adjoint_operator(kspace, train_mask, sens_maps))
    if float(zero_filled_norm) == 0:
        raise ValueError("kspace is zero on every training column; there is nothing to fit")
    with torch.no_grad():
        scale = torch.linalg.vector_norm(channels_to_complex(net())) / zero_filled_norm
    target = kspace * scale

    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    best_image: torch.Tensor | None = None
    best_loss = math.inf
    best_iteration = 0
    holdout_losses: list[float] = []
    train_losses: list[float] = []
    checks_without_improvement = 0
    stopped_early = False
    iteration = 0
    # Iterate ``iteration`` is the image after that many Adam steps; the last one is only evaluated.
    for iteration in range(num_iters + 1):
        image = channels_to_complex(net())
        train_loss = kspace_consistency_loss(image, target, train_mask, sens_maps)
        train_losses.append(float(train_loss.detach()))
        if has_holdout and (iteration % check_every == 0 or iteration == num_iters):
            with torch.no_grad():
                holdout_loss = float(kspace_consistency_loss(image, target, holdout_mask, sens_maps))
            holdout_losses.append(holdout_loss)
            if holdout_loss < best_loss:
                best_loss, best_iteration = holdout_loss, iteration
                best_image = image.detach().clone()
                checks_without_improvement = 0
            else:
                checks_without_improvement += 1
                if checks_without_improvement >= patience:
                    stopped_early = True
                    break
        if iteration == num_iters:
            break
        optimizer.zero_grad(set_to_none=True)
        train_loss.backward()
        optimizer.step()
    if best_image is None:  # no held-out set: the last iterate
        best_image, best_iteration = image.detach().clone(), iteration
    info = {
        "iterations": iteration,
        "best_iteration": best_iteration,
        "best_holdout_loss": best_loss if has_holdout else None,
        "initial_holdout_loss": holdout_losses[0] if has_holdout else None,
        "final_holdout_loss": holdout_losses[-1] if has_holdout else None,
        "initial_train_loss": train_losses[0],
        "final_train_loss": train_losses[-1],
        "stopped_early": stopped_early,
        "holdout_columns": torch.nonzero(holdout_mask).flatten().tolist(),
    }
    return (best_image[0] / scale).detach(), info


def _check_slice_inputs(kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor | None) -> None:
    if kspace.ndim != 4 or kspace.shape[0] != 1 or not torch.is_complex(kspace):
        raise ValueError(
            f"kspace must be complex (1, C, H, W) for one slice, got {kspace.dtype} {tuple(kspace.shape)}"
        )
    width = kspace.shape[-1]
    if mask.shape not in ((width,), (1, width)):
        raise ValueError(f"mask must be (W,) or (1, W) with W = {width}, got shape {tuple(mask.shape)}")
    if sens_maps is not None and sens_maps.shape != kspace.shape:
        raise ValueError(
            f"sens_maps shape {tuple(sens_maps.shape)} does not match kspace shape {tuple(kspace.shape)}"
        )
    if sens_maps is None and kspace.shape[1] != 1:
        raise ValueError(f"kspace has {kspace.shape[1]} coils but no sens_maps were given")


def _check_settings(
    num_iters: int,
    lr: float,
    channels: int,
    num_layers: int,
    holdout_fraction: float,
    patience: int,
    check_every: int,
) -> None:
    problems = [
        f"{name}={value}"
        for name, value, valid in (
            ("num_iters", num_iters, num_iters >= 0),
            ("lr", lr, lr > 0),
            ("channels", channels, channels >= 1),
            ("num_layers", num_layers, num_layers >= 1),
            ("holdout_fraction", holdout_fraction, 0 <= holdout_fraction < 1),
            ("patience", patience, patience >= 1),
            ("check_every", check_every, check_every >= 1),
        )
        if not valid
    ]
    if problems:
        raise ValueError(f"invalid untrained-network setting(s): {', '.join(problems)}")


def slice_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th slice of a batch, derived from the model's ``seed``.

    Mixed through numpy's SeedSequence, so neighbouring seeds do not share slice seeds
    (``seed + index`` would give seed 0's second slice the same network as seed 1's first).
    """
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


class UntrainedNetwork(nn.Module):
    """The untrained-network baseline behind the reconstruction-model interface.

    Every call fits a fresh ConvDecoder to each slice of the batch in turn (:func:`fit_untrained`),
    with the slice's seed derived from ``seed`` and its position in the batch, so a repeated call
    returns the same images. The module has no parameters; the per-slice fit reports of the last call
    are kept in ``last_info``.

    Image-domain inputs: under an image-domain attack (``physics.zero_filled``), the network is fitted
    to ``y' = M F S zero_filled``. For single-coil data ``M F (A^H y) = M y`` exactly, so an
    unperturbed input reproduces the measurements. For multicoil data ``S S^H`` is not the identity
    on coil images, so even an unperturbed ``y'`` is only the projection of ``y`` onto the range of
    ``A = M F S``: an approximation, exact when the data are consistent with the maps.

    The output is not differentiable with respect to the inputs (each fit is its own optimisation),
    so gradient-based attacks must be transferred from another model.

    Args:
        num_iters, lr, channels, num_layers, holdout_fraction, patience, check_every: as in
            :func:`fit_untrained`.
        seed: base seed of the per-slice fits.
    """

    HYPERPARAMETERS = (
        "num_iters",
        "lr",
        "channels",
        "num_layers",
        "holdout_fraction",
        "patience",
        "seed",
        "check_every",
    )

    def __init__(
        self,
        num_iters: int = 1000,
        lr: float = 0.008,
        channels: int = 64,
        num_layers: int = 6,
        holdout_fraction: float = 0.05,
        patience: int = 100,
        seed: int = 0,
        check_every: int = 1,
    ):
        super().__init__()
        _check_settings(num_iters, lr, channels, num_layers, holdout_fraction, patience, check_every)
        self.num_iters = int(num_iters)
        self.lr = float(lr)
        self.channels = int(channels)
        self.num_layers = int(num_layers)
        self.holdout_fraction = float(holdout_fraction)
        self.patience = int(patience)
        self.seed = int(seed)
        self.check_every = int(check_every)
        self.last_info: list[dict[str, Any]] = []

    def forward(self, kspace: torch.Tensor, physics: MRIPhysics) -> torch.Tensor:
        """Reconstruct each slice by fitting an untrained network to it.

        Args:
            kspace: measured k-space ``y``, complex ``(B, C, H, W)``.
            physics: the batch's operator; an image-domain perturbation it carries replaces ``y``
                by ``A`` of the perturbed image (see the class notes). The fits are seeded by
                ``seed``, so results are repeatable without a generator.

        Returns:
            complex ``(B, H, W)``, detached.
        """
        if kspace.ndim != 4:
            raise ValueError(f"kspace must be (B, C, H, W), got shape {tuple(kspace.shape)}")
        batch = kspace.shape[0]
        zero_filled = physics.zero_filled
        if zero_filled is not None and zero_filled.shape != (batch, *kspace.shape[-2:]):
            raise ValueError(
                f"zero_filled shape {tuple(zero_filled.shape)} does not match kspace shape "
                f"{tuple(kspace.shape)}"
            )
        images, infos = [], []
        for index in range(batch):
            one = physics.select(index)
            if one.zero_filled is None:
                slice_kspace = kspace[index : index + 1]
            else:
                slice_kspace = one.A(one.zero_filled)
            image, info = fit_untrained(
                slice_kspace,
                one.mask,
                one.sens_maps,
                num_iters=self.num_iters,
                lr=self.lr,
                channels=self.channels,
                num_layers=self.num_layers,
                holdout_fraction=self.holdout_fraction,
                patience=self.patience,
                seed=slice_seed(self.seed, index),
                check_every=self.check_every,
            )
            images.append(image)
            infos.append(info)
        self.last_info = infos
        return torch.stack(images)

    def to_record(self) -> dict[str, Any]:
        """``{"kind": "untrained", ...hyperparameters}``, enough to rebuild this model."""
        return {"kind": "untrained", **{name: getattr(self, name) for name in self.HYPERPARAMETERS}}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> UntrainedNetwork:
        """Rebuild from :meth:`to_record`'s dict; missing hyperparameters take their defaults."""
        if not isinstance(record, dict) or record.get("kind") != "untrained":
            kind = record.get("kind") if isinstance(record, dict) else type(record).__name__
            raise ValueError(f"not an untrained-network record: kind {kind!r}, expected 'untrained'")
        # Provenance is metadata about the record, not a setting.
        settings = {key: value for key, value in record.items() if key not in ("kind", "provenance")}
        unknown = sorted(set(settings) - set(cls.HYPERPARAMETERS))
        if unknown:
            raise ValueError(
                f"untrained-network record has unknown key(s) {', '.join(unknown)}; "
                f"valid: {', '.join(cls.HYPERPARAMETERS)}"
            )
        return cls(**settings)
