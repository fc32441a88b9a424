"""Self-supervised k-space losses: fitting measured data without a ground truth.

Untrained networks and test-time training see only the measurement ``y``. They minimise a
k-space consistency loss on part of the sampled columns and hold out the rest to tell when the
fit starts reproducing noise and artefacts instead of the image (self-validation, as in Darestani,
Chaudhari and Heckel's test-time training).
"""

from __future__ import annotations

import torch

from smug.mri.operators import apply_column_mask, forward_operator


def split_mask(
    mask: torch.Tensor, holdout_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Partition the sampled columns of a column mask into a training and a held-out set.

    ``round(holdout_fraction * num_sampled)`` columns are held out per mask row (at least one when
    ``holdout_fraction > 0``), drawn uniformly among the sampled columns other than the DC column
    ``W // 2``, which always stays in the training set so the fit keeps the image's low
    frequencies.

    Args:
        mask: bool column mask ``(W,)`` or ``(B, W)``; rows of a ``(B, W)`` mask are split
            independently.
        holdout_fraction: fraction of the sampled columns to hold out, in ``[0, 1)``.
        generator: CPU ``torch.Generator``; the same generator state gives the same split.

    Returns:
        ``(train_mask, holdout_mask)``: bool, same shape and device as ``mask``, disjoint, with
        union ``mask``.
    """
    if mask.ndim not in (1, 2):
        raise ValueError(f"mask must be a column mask (W,) or (B, W), got shape {tuple(mask.shape)}")
    if not 0 <= holdout_fraction < 1:
        raise ValueError(f"holdout_fraction {holdout_fraction} is outside [0, 1)")
    sampled = (mask != 0).cpu().reshape(-1, mask.shape[-1])
    centre = mask.shape[-1] // 2
    holdout = torch.zeros_like(sampled)
    for row, row_sampled in enumerate(sampled):
        num_sampled = int(row_sampled.sum())
        num_holdout = round(holdout_fraction * num_sampled)
        if holdout_fraction > 0:
            num_holdout = max(num_holdout, 1)
        candidates = torch.nonzero(row_sampled).flatten()
        candidates = candidates[candidates != centre]
        if num_holdout > len(candidates):
            raise ValueError(
                f"holdout_fraction {holdout_fraction} asks for {num_holdout} held-out columns but mask "
                f"row {row} has only {len(candidates)} sampled columns besides the centre column {centre}"
            )
        chosen = candidates[torch.randperm(len(candidates), generator=generator)[:num_holdout]]
        holdout[row, chosen] = True
    holdout = holdout.reshape(mask.shape).to(mask.device)
    sampled = sampled.reshape(mask.shape).to(mask.device)
    return sampled & ~holdout, holdout


def kspace_consistency_loss(
    image: torch.Tensor,
    kspace: torch.Tensor,
    mask: torch.Tensor,
    sens_maps: torch.Tensor | None = None,
) -> torch.Tensor:
    """Relative L1 k-space error on the masked columns, ``||M A_full x - M y||_1 / ||M y||_1``.

    ``A_full = F S`` (``F`` alone for single-coil). The L1 norm of complex entries is the sum of
    their magnitudes, so real and imaginary errors are not penalised separately. Only entries whose
    column is True in ``mask`` enter: k-space elsewhere, measured or not, is ignored. Computed per
    sample and averaged over the batch; this is the robustness study's ``||y - A f(y)||_1 / ||y||_1``
    restricted to ``mask`` (a training or held-out subset of the sampled columns).

    Args:
        image: complex ``(B, H, W)`` reconstruction.
        kspace: complex ``(B, C, H, W)`` measured k-space (``C = 1`` single-coil).
        mask: bool column mask ``(W,)`` or ``(B, W)`` selecting the entries compared.
        sens_maps: complex ``(B, C, H, W)``, or None for single-coil.

    Returns:
        real scalar tensor, differentiable with respect to ``image``.
    """
    if image.ndim != 3 or kspace.ndim != 4:
        raise ValueError(
            f"image must be (B, H, W) and kspace (B, C, H, W); got shapes {tuple(image.shape)} "
            f"and {tuple(kspace.shape)}"
        )
    if image.shape[0] != kspace.shape[0] or image.shape[-2:] != kspace.shape[-2:]:
        raise ValueError(
            f"image shape {tuple(image.shape)} does not match kspace shape {tuple(kspace.shape)}"
        )
    if sens_maps is None and kspace.shape[1] != 1:
        raise ValueError(f"kspace has {kspace.shape[1]} coils but no sens_maps were given")
    if sens_maps is not None and sens_maps.shape != kspace.shape:
        raise ValueError(
            f"sens_maps shape {tuple(sens_maps.shape)} does not match kspace shape {tuple(kspace.shape)}"
        )
    measured = apply_column_mask(kspace, mask)
    predicted = forward_operator(image, mask, sens_maps)
    error = (predicted - measured).abs().sum(dim=(1, 2, 3))
    reference = measured.abs().sum(dim=(1, 2, 3))
    if bool((reference == 0).any()):
        raise ValueError(
            "kspace is zero on every masked entry of some sample; the relative loss is undefined"
        )
    return (error / reference).mean()
