"""Shared fixtures: small random complex data and sensitivities, seeded per test."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def random_complex(shape, gen: torch.Generator, dtype=torch.complex128) -> torch.Tensor:
    real_dtype = torch.float64 if dtype == torch.complex128 else torch.float32
    return torch.complex(
        torch.randn(shape, generator=gen, dtype=real_dtype),
        torch.randn(shape, generator=gen, dtype=real_dtype),
    )


def random_sens_maps(batch: int, coils: int, h: int, w: int, gen: torch.Generator, dtype=torch.complex128):
    """Smooth-ish random maps normalised so that sum_c |S_c|^2 = 1 at every pixel."""
    maps = random_complex((batch, coils, h, w), gen, dtype)
    return maps / torch.sqrt((maps.abs() ** 2).sum(1, keepdim=True))


class TinySlices(torch.utils.data.Dataset):
    """``n`` random single-coil 12x12 slices, every other column sampled, as SliceDataset gives them."""

    def __init__(self, n: int = 6, size: int = 12):
        from smug.mri import fft2c
        from smug.mri import apply_column_mask

        gen = torch.Generator().manual_seed(0)
        self.mask = torch.zeros(size, dtype=torch.bool)
        self.mask[::2] = True
        self.targets = random_complex((n, size, size), gen, torch.complex64) * 0.3
        self.kspace = apply_column_mask(fft2c(self.targets).unsqueeze(1), self.mask)

    def __len__(self) -> int:
        return len(self.targets)

    def reconstruct(self, model: torch.nn.Module, seed: int = 5) -> torch.Tensor:
        """``model``'s reconstruction of every slice, through the one reconstructor interface."""
        from smug.data import Batch
        from smug.models.reconstruct import reconstruct

        batch = Batch(kspace=self.kspace, mask=self.mask, target=self.targets)
        return reconstruct(model, batch, torch.Generator().manual_seed(seed))

    def __getitem__(self, i: int) -> dict:
        return {
            "kspace": self.kspace[i],
            "mask": self.mask,
            "target": self.targets[i],
            "fname": f"f{i}",
            "slice": 0,
        }
