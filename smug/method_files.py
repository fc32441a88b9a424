"""The ``model.pt`` of every method: read a saved record and rebuild the method it describes.

A trained network's record carries its spec and weights, so :func:`load_method` needs nothing but
the file: a reviewer can re-run any evaluation from the checkpoint alone. Tuned compressed sensing,
the untrained network and zero-filled save only their settings, under a top-level ``kind``.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch
from torch import nn

from smug import classical
from smug.io import load_torch_file
from smug.methods import KINDS
from smug.models.factory import network_from_record
from smug.models.zero_filled import ZeroFilled
from smug.untrained import UntrainedNetwork

# How a record of each family (smug.methods.Kind.family) becomes a model.
_FROM_RECORD: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "denoiser": network_from_record,
    "unrolled": network_from_record,
    "unet": network_from_record,
    "classical": classical.from_record,
    "untrained": UntrainedNetwork.from_record,
    "zero_filled": lambda record: ZeroFilled(),
}


def read_record(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """The saved record of a ``model.pt`` (spec, provenance, history and weights), without building
    the model.

    Loaded with ``weights_only=True``: tensors, numbers, strings and containers only, so a crafted
    file can never execute code when it is opened.
    """
    record = load_torch_file(path, device, what="model file")
    if not isinstance(record, dict):
        raise ValueError(f"model file {path} holds a {type(record).__name__}, not a saved model record")
    return record


def record_kind(record: dict[str, Any]) -> str | None:
    """The method kind a record was saved as: its own ``kind``, or its spec's for trained networks."""
    if "kind" in record:
        return record["kind"]
    spec = record.get("spec")
    return spec.get("kind") if isinstance(spec, dict) else None


def load_method(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild any reconstruction method the pipeline saved: trained networks (``scripts/train.py``),
    tuned compressed sensing (``scripts/tune_classical.py``), and the settings of the untrained network
    and the zero-filled reconstruction (``scripts/write_method.py``).

    Returns ``(model in eval mode, saved record)``.
    """
    record = read_record(path, device)
    kind = record_kind(record)
    if kind not in KINDS:
        raise ValueError(f"{path} is not a model saved by this pipeline (no method kind, or an unknown one: {kind!r})")
    try:
        model = _FROM_RECORD[KINDS[kind].family](record)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return model.to(device).eval(), record
