"""The measurement operator every reconstruction model is given: ``y = A x`` with ``A = M F S``.

Every model is called as ``model(y, physics, **options)`` (after deepinv's
``Reconstructor.forward(y, physics)``): ``y`` the measured k-space, ``physics`` an :class:`MRIPhysics`
owning the column mask ``M``, the coil maps ``S`` (None for single-coil), ``A``, ``A^H`` and the normal
operator ``A^H A``. A model takes what it needs from it: an image-domain network starts from
:meth:`MRIPhysics.zero_filled_image`, an unrolled one also calls :meth:`MRIPhysics.data_consistency`,
a k-space network starts from :meth:`MRIPhysics.kspace_input` and uses ``A``/``A^H`` between its
cascades. None needs to know how the batch was made or perturbed.

How an image-domain perturbation reaches a model. The SMUG code attacks the zero-filled image
``A^H y`` itself, which no change of ``y`` can represent in general (``A^H`` is not onto). So the
physics carries the perturbed image, ``zero_filled``: image-domain models start from it instead of
``A^H y``; a k-space network starts from the k-space whose coil combination is that image
(:meth:`MRIPhysics.kspace_input`). Carrying the image (not the offset from ``A^H y``) keeps the sum
``A^H y + delta`` computed once, where the attack forms it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from smug.mri.coil_combine import sens_expand
from smug.mri.data_consistency import data_consistency
from smug.mri.fftc import fft2c
from smug.mri.operators import adjoint_operator, forward_operator, normal_operator


@dataclass(frozen=True, eq=False)
class MRIPhysics:
    """The (multicoil) Cartesian MRI operator of one batch of slices.

    Attributes:
        mask: column mask, ``(W,)`` (one for the batch) or ``(B, W)``.
        sens_maps: complex ``(B, C, H, W)``, or None for single-coil data (``C = 1``).
        zero_filled: None, or complex ``(B, H, W)``: the image the measurements enter the models
            as, in place of ``A^H y`` (an image-domain perturbation of it; see the module notes).
    """

    mask: torch.Tensor
    sens_maps: torch.Tensor | None = None
    zero_filled: torch.Tensor | None = None

    def A(self, image: torch.Tensor) -> torch.Tensor:
        """``A x``: complex image ``(B, H, W)`` to masked k-space ``(B, C, H, W)``."""
        return forward_operator(image, self.mask, self.sens_maps)

    def A_adjoint(self, kspace: torch.Tensor) -> torch.Tensor:
        """``A^H y``: k-space ``(B, C, H, W)`` to the complex image ``(B, H, W)``."""
        return adjoint_operator(kspace, self.mask, self.sens_maps)

    def A_adjoint_A(self, image: torch.Tensor) -> torch.Tensor:
        """The normal operator ``A^H A`` on a complex image ``(B, H, W)``."""
        return normal_operator(image, self.mask, self.sens_maps)

    def zero_filled_image(self, kspace: torch.Tensor) -> torch.Tensor:
        """The image the measurements ``kspace`` ``(B, C, H, W)`` enter a model as, complex
        ``(B, H, W)``: ``A^H y``, or the perturbed one this physics carries."""
        return self.A_adjoint(kspace) if self.zero_filled is None else self.zero_filled

    def kspace_input(self, kspace: torch.Tensor) -> torch.Tensor:
        """The coil k-space a k-space network starts from, ``(B, C, H, W)``: ``y``, or, under an
        image-domain perturbation ``A^H y + delta``, ``y + F S delta``, whose coil combination is the
        perturbed image wherever the maps are normalised (``S^H S = I``; always for single-coil)."""
        if self.zero_filled is None:
            return kspace
        delta = self.zero_filled - self.A_adjoint(kspace)
        coil_delta = delta.unsqueeze(1) if self.sens_maps is None else sens_expand(delta, self.sens_maps)
        return kspace + fft2c(coil_delta)

    def data_consistency(
        self,
        denoised: torch.Tensor,
        zero_filled: torch.Tensor,
        lam: torch.Tensor | float,
        max_iter: int = 10,
        tol: float = 1e-6,
    ) -> torch.Tensor:
        """MoDL's ``(A^H A + lam I)^-1 (A^H y + lam z)`` for ``z = denoised`` and ``A^H y =
        zero_filled``, both complex ``(B, H, W)`` (:func:`smug.mri.data_consistency.data_consistency`:
        closed form single-coil, conjugate gradient with ``max_iter``, ``tol`` for SENSE)."""
        return data_consistency(
            denoised, zero_filled, self.mask, lam, self.sens_maps, max_iter=max_iter, tol=tol
        )

    def repeat(self, copies: int) -> MRIPhysics:
        """The operator of ``copies`` stacked copies of the batch (``(copies * B, ...)``, copy-major,
        as ``Tensor.repeat`` stacks the measurements)."""
        return MRIPhysics(
            mask=self.mask if self.mask.ndim == 1 else self.mask.repeat(copies, 1),
            sens_maps=None if self.sens_maps is None else self.sens_maps.repeat(copies, 1, 1, 1),
            zero_filled=None if self.zero_filled is None else self.zero_filled.repeat(copies, 1, 1),
        )

    def select(self, index: int) -> MRIPhysics:
        """The operator of slice ``index`` alone: a ``(W,)`` mask, ``(1, ...)`` maps and image."""
        return MRIPhysics(
            mask=self.mask if self.mask.ndim == 1 else self.mask[index],
            sens_maps=None if self.sens_maps is None else self.sens_maps[index : index + 1],
            zero_filled=None if self.zero_filled is None else self.zero_filled[index : index + 1],
        )

    def with_zero_filled(self, zero_filled: torch.Tensor | None) -> MRIPhysics:
        """The same operator with the measurements entering as ``zero_filled`` (None: ``A^H y``)."""
        return replace(self, zero_filled=zero_filled)
