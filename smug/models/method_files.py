"""The ``model.pt`` of every method: read a saved record and rebuild the method it describes.

A trained network's record carries its spec and weights, so :func:`load_method` needs nothing but
the file: a reviewer can re-run any evaluation from the checkpoint alone. Tuned compressed sensing,
the untrained network and zero-filled save only their settings, under a top-level ``kind``.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable

import torch
from torch import nn

from smug.models import classical
from smug.utils import load_torch_file
from smug.study import KINDS
from smug.models.factory import network_from_record
from smug.models.denoisers import check_arguments
from smug.models.zero_filled import ZeroFilled
from smug.models.untrained import UntrainedNetwork


class ModelFileError(ValueError):
    """A ``model.pt`` that is no record of a method this pipeline can rebuild: a malformed spec, a
    setting of the wrong type, an unknown key or kind, a size beyond the limits, weights that do not
    fit the spec's network. The message starts with the file's path and names the offending key."""


def _check_settings(record: dict[str, Any], cls: type) -> None:
    """Check the types and sizes of the record's settings that are arguments of ``cls`` (other keys
    are metadata, or its ``from_record``'s to refuse)."""
    arguments = inspect.signature(cls).parameters
    check_arguments("record", {key: value for key, value in record.items() if key in arguments}, cls)


def _classical(record: dict[str, Any]) -> nn.Module:
    _check_settings(record, classical.CompressedSensing)
    if not isinstance(record.get("solver_kwargs", {}), dict):
        raise ValueError(f"record.solver_kwargs is a {type(record['solver_kwargs']).__name__}, not a mapping")
    return classical.from_record(record)


def _untrained(record: dict[str, Any]) -> nn.Module:
    _check_settings(record, UntrainedNetwork)
    return UntrainedNetwork.from_record(record)


# How a record of each family (smug.study.methods.Kind.family) becomes a model; each checks the record's
# structure, types and sizes before it builds anything.
_FROM_RECORD: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "denoiser": network_from_record,
    "unrolled": network_from_record,
    "unet": network_from_record,
    "classical": _classical,
    "untrained": _untrained,
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
        raise ModelFileError(f"{path}: the file holds a {type(record).__name__}, not a saved model record")
    return record


def record_kind(record: dict[str, Any]) -> str | None:
    """The method kind a record was saved as: its own ``kind``, or its spec's for trained networks
    (whatever it holds: :func:`load_method` checks it)."""
    if "kind" in record:
        return record["kind"]
    spec = record.get("spec")
    return spec.get("kind") if isinstance(spec, dict) else None


def load_method(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild any reconstruction method the pipeline saved: trained networks (``scripts/train.py``),
    tuned compressed sensing (``scripts/tune_classical.py``), and the settings of the untrained network
    and the zero-filled reconstruction (``scripts/write_method.py``).

    Returns ``(model in eval mode, saved record)``.

    Raises:
        ModelFileError: the record is not one this pipeline can rebuild; nothing was built (the
            record's structure, types, sizes and weights' shapes are checked first).
        FileNotFoundError, ValueError: no file, or one :func:`smug.utils.io.load_torch_file` refuses.
    """
    record = read_record(path, device)
    kind = record_kind(record)
    if not isinstance(kind, str) or kind not in KINDS:
        raise ModelFileError(f"{path} is not a model saved by this pipeline: {_kind_problem(record)}")
    try:
        model = _FROM_RECORD[KINDS[kind].family](record)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    return model.to(device).eval(), record


def _kind_problem(record: dict[str, Any]) -> str:
    """Why a record has no method kind this pipeline knows, naming the key."""
    known = ", ".join(KINDS)
    if "kind" in record:
        return f"kind is {record['kind']!r}, not one of {known}"
    spec = record.get("spec")
    if "spec" not in record:
        return "it has neither a 'kind' nor a 'spec'"
    if not isinstance(spec, dict):
        return f"spec is a {type(spec).__name__}, not a mapping"
    if "kind" not in spec:
        return "spec has no 'kind'"
    return f"spec.kind is {spec['kind']!r}, not one of {known}"
