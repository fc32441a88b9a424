"""A perturbation generator's output as an attack on a reconstruction: the min-max game's
generator, trained against one model, transferred to every other (and used in that game itself).

The perturbation acts on the image (``domain="image"``) or on the measurements (``"kspace"``:
``y + M F S p``, where the scanner measures), through the same path as the PGD attacks.
"""

from __future__ import annotations

import torch

from smug.attacks.perturbations import DOMAINS, apply_perturbation, zero_filled_image
from smug.data import Batch
from smug.mri import channels_to_complex, forward_operator


def _as_complex(perturbation: torch.Tensor) -> torch.Tensor:
    """Generator output ``(B, 1 or 2, H, W)`` to a complex ``(B, H, W)`` (1 channel: real-valued)."""
    if perturbation.ndim != 4 or perturbation.shape[1] not in (1, 2):
        raise ValueError(f"perturbation must be (B, 1 or 2, H, W), got shape {tuple(perturbation.shape)}")
    if perturbation.shape[1] == 2:
        return channels_to_complex(perturbation)
    real = perturbation[:, 0]
    return torch.complex(real, torch.zeros_like(real))


def kspace_perturbation(
    perturbation: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor | None = None
) -> torch.Tensor:
    """``M F S p``: a 2-channel generator output as a perturbation of the measured k-space.

    Args:
        perturbation: real ``(B, 2, H, W)`` (real and imaginary parts of the image ``p``).
        mask: column mask ``(W,)`` or ``(B, W)``.
        sens_maps: complex ``(B, C, H, W)`` or None for single-coil.

    Returns:
        complex ``(B, C, H, W)``, zero off the mask.
    """
    if perturbation.ndim != 4 or perturbation.shape[1] != 2:
        raise ValueError(
            "a k-space perturbation needs a 2-channel (complex) generator output (B, 2, H, W), "
            f"got shape {tuple(perturbation.shape)}"
        )
    return forward_operator(channels_to_complex(perturbation), mask, sens_maps)


def perturb_input(batch: Batch, perturbation: torch.Tensor, domain: str) -> torch.Tensor:
    """The zero-filled image the reconstructor sees under ``perturbation``.

    Every model takes the measurements only through ``A^H y`` (its ``zero_filled`` argument), so
    both domains are expressed as a perturbed zero-filled image:

    - ``"image"``: ``A^H y + p`` with ``p`` complex (2 channels) or real (1 channel).
    - ``"kspace"``: ``A^H (y + M F S p)``, the zero-filled image of perturbed measurements.

    Args:
        batch: the clean slices.
        perturbation: generator output, real ``(B, 1 or 2, H, W)``.
        domain: "image" or "kspace".

    Returns:
        complex ``(B, H, W)`` to pass as ``zero_filled``.
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown perturbation domain {domain!r}; valid: {', '.join(DOMAINS)}")
    kspace = batch.kspace
    if perturbation.shape[0] != kspace.shape[0] or perturbation.shape[-2:] != kspace.shape[-2:]:
        raise ValueError(
            f"perturbation of shape {tuple(perturbation.shape)} does not fit k-space of shape {tuple(kspace.shape)}"
        )
    if domain == "image":
        delta = _as_complex(perturbation)
    else:
        delta = kspace_perturbation(perturbation, batch.mask, batch.sens_maps)
    # The one perturbation path of the study, shared with the PGD attacks.
    return zero_filled_image(apply_perturbation(batch, delta.to(kspace.dtype), domain))
