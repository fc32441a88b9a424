"""Classical compressed sensing as a method of the study: l1-wavelet or total variation with a tuned
weight, as a model (:class:`CompressedSensing`) saved to and rebuilt from its ``model.pt`` record.
The solvers are :mod:`smug.models.cs_solvers`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from smug.mri import WAVELETS, MRIPhysics
from smug.models.cs_solvers import TV_SOLVERS, l1_wavelet_recon, tv_recon

METHODS = ("l1_wavelet", "tv")
# Options each method accepts besides lam and num_iters, with their defaults. The ones the pipeline
# sets (classical.wavelet, classical.levels, classical.tv_solver) have none here: their one default
# is config/config.yaml's, so a caller must give them.
REQUIRED = None
SOLVER_OPTIONS: dict[str, dict[str, Any]] = {
    "l1_wavelet": {"wavelet": REQUIRED, "levels": REQUIRED},
    "tv": {"solver": REQUIRED, "inner_iters": 10, "pdhg_step": 3.0, "cg_max_iter": 10, "cg_tol": 1e-6},
}


# ----------------------------------------------------------------------------------------------
# Model interface and persistence
# ----------------------------------------------------------------------------------------------


def check_solver_options(method: str, solver_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The full option set of ``method``: defaults overridden by ``solver_kwargs`` (unknown keys raise)."""
    if method not in METHODS:
        raise ValueError(f"unknown compressed-sensing method {method!r}; valid: {', '.join(METHODS)}")
    allowed = SOLVER_OPTIONS[method]
    unknown = sorted(set(solver_kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown solver option(s) {', '.join(unknown)} for method {method!r}; "
            f"valid: {', '.join(allowed)}"
        )
    options = {**allowed, **solver_kwargs}
    missing = [key for key, value in options.items() if value is REQUIRED]
    if missing:
        raise ValueError(
            f"compressed-sensing method {method!r} needs {', '.join(missing)} (classical section of the config)"
        )
    if method == "l1_wavelet" and options["wavelet"] not in WAVELETS:
        raise ValueError(f"unknown wavelet {options['wavelet']!r}; valid: {', '.join(WAVELETS)}")
    if method == "tv" and options["solver"] not in TV_SOLVERS:
        raise ValueError(f"unknown TV solver {options['solver']!r}; valid: {', '.join(TV_SOLVERS)}")
    return options


def cs_reconstruct(
    method: str,
    zero_filled: torch.Tensor,
    mask: torch.Tensor,
    sens_maps: torch.Tensor | None,
    lam: float,
    num_iters: int,
    **solver_kwargs: Any,
) -> torch.Tensor:
    """Dispatch to :func:`l1_wavelet_recon` or :func:`tv_recon`; returns complex ``(B, H, W)``."""
    options = check_solver_options(method, solver_kwargs)
    recon = l1_wavelet_recon if method == "l1_wavelet" else tv_recon
    return recon(zero_filled, mask, sens_maps, lam, num_iters, **options)


class CompressedSensing(nn.Module):
    """A classical reconstruction behind the reconstruction-model interface (no learnable parameters).

    Args:
        method: ``l1_wavelet`` or ``tv``.
        lam: regularisation weight.
        num_iters: solver iterations.
        **solver_kwargs: options of the method (see :data:`SOLVER_OPTIONS`).
    """

    def __init__(self, method: str, lam: float, num_iters: int, **solver_kwargs: Any):
        super().__init__()
        self.solver_kwargs = dict(solver_kwargs)
        check_solver_options(method, self.solver_kwargs)
        if not lam > 0 or num_iters < 0:
            raise ValueError(f"need lam > 0 and num_iters >= 0, got lam={lam}, num_iters={num_iters}")
        self.method = method
        self.lam = float(lam)
        self.num_iters = int(num_iters)

    def forward(self, kspace: torch.Tensor, physics: MRIPhysics) -> torch.Tensor:
        """Reconstruct complex ``(B, H, W)`` from k-space ``(B, C, H, W)``, starting from
        ``physics.zero_filled_image(y)`` (``A^H y`` or its image-domain perturbation). The number of
        solver iterations is a setting, not an unroll count, and the solvers are deterministic.
        """
        return cs_reconstruct(
            self.method,
            physics.zero_filled_image(kspace),
            physics.mask,
            physics.sens_maps,
            self.lam,
            self.num_iters,
            **self.solver_kwargs,
        )

    def extra_repr(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.solver_kwargs.items())
        return f"method={self.method!r}, lam={self.lam:g}, num_iters={self.num_iters}" + (
            f", {options}" if options else ""
        )


def to_record(
    model: CompressedSensing, tuning: list[dict] | None = None, provenance: dict | None = None
) -> dict[str, Any]:
    """The ``model.pt`` dictionary of a tuned classical method (read back by :func:`from_record`)."""
    return {
        "kind": "classical",
        "method": model.method,
        "lam": model.lam,
        "num_iters": model.num_iters,
        "solver_kwargs": dict(model.solver_kwargs),
        "tuning": list(tuning or []),
        "provenance": dict(provenance or {}),
    }


def from_record(record: dict[str, Any]) -> CompressedSensing:
    """Rebuild the :class:`CompressedSensing` model saved by ``scripts/tune_classical.py``."""
    if not isinstance(record, dict) or record.get("kind") != "classical":
        kind = record.get("kind") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"not a classical-method record (kind {kind!r}, expected 'classical')")
    missing = [key for key in ("method", "lam", "num_iters") if key not in record]
    if missing:
        raise ValueError(f"classical-method record lacks key(s) {', '.join(missing)}")
    return CompressedSensing(
        record["method"], record["lam"], record["num_iters"], **record.get("solver_kwargs", {})
    ).eval()
