"""Denoisers by name, so configs can say ``denoiser: didn`` with keyword arguments beside it."""

from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any, Iterable

from torch import nn

from smug.models.didn import DIDN
from smug.models.dncnn import DnCNN
from smug.models.unet import UNet

# The network of each name of smug.study.methods.DENOISER_NAMES (a test holds the two equal).
DENOISERS: dict[str, type[nn.Module]] = {"didn": DIDN, "dncnn": DnCNN, "unet": UNet}

# Bounds on what a saved spec may ask for, checked before anything is built: a crafted model.pt must
# be refused, naming the setting, not make the loader allocate (a million DnCNN layers took 5.5 GB of
# Python modules before a weight was read; a million channels asked for 36 TB). Generous: the study's
# networks are far below them (DIDN with 64 channels and 3 down-up blocks has about 5 M parameters,
# DnCNN 5 to 20 layers, the U-Net 4 poolings, SMUG 10 noise samples).
MAX_PARAMETERS = 10**9  # 4 GB of float32 weights, on top of the copy the record already holds
SIZE_LIMITS: dict[str, tuple[int, str]] = {
    # depth: every layer or block is a Python module of its own
    **dict.fromkeys(("num_layers", "num_dubs", "num_blocks"), (1000, "layers")),
    # each pooling halves the image, so 16 already needs images of 65536 pixels a side
    "num_pool_layers": (16, "pooling layers"),
    # width: the parameters grow with its square (MAX_PARAMETERS bounds the product)
    **dict.fromkeys(("in_chans", "out_chans", "num_chans", "chans", "channels"), (16384, "channels")),
    # the forward pass: the unrolls run in turn, the smoothing samples as one batch
    "num_unrolls": (1000, "unrolls"),
    "num_samples": (10000, "samples"),
}
# Types a setting may be checked against (others, a module for instance, are not settings).
_SETTING_TYPES = (bool, int, float, str, type(None))


def build_denoiser(name: str, **kwargs: Any) -> nn.Module:
    """Construct the denoiser called ``name`` ("didn", "dncnn" or "unet") with ``kwargs``.

    Raises:
        ValueError: unknown ``name``, or an argument value the network rejects.
        TypeError: an argument the network does not take (the message names it and lists the valid
            ones).
    """
    key = str(name).lower()
    if key not in DENOISERS:
        raise ValueError(f"unknown denoiser {name!r}; valid names: {', '.join(sorted(DENOISERS))}")
    cls = DENOISERS[key]
    valid = [p for p in inspect.signature(cls).parameters]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(
            f"denoiser {key!r} got unknown argument(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
        )
    return cls(**kwargs)


def check_arguments(
    where: str,
    settings: Any,
    cls: type,
    allowed: Iterable[str] | None = None,
    aliases: dict[str, str] | None = None,
) -> None:
    """Check the settings ``cls(**settings)`` would be called with, before anything is built.

    ``settings`` must be a mapping of ``allowed`` keys (default: ``cls``'s arguments), each value of
    the type ``cls``'s signature annotates (an integer for an ``int``, a finite number for a
    ``float``) and within :data:`SIZE_LIMITS`. ``aliases`` maps a key to the argument of ``cls`` it
    sets, where the names differ.

    Raises:
        ValueError: naming the offending key as ``where.key``.
    """
    if not isinstance(settings, dict):
        raise ValueError(f"{where} is a {type(settings).__name__}, not a mapping")
    hints = typing.get_type_hints(cls.__init__)
    allowed = [p for p in inspect.signature(cls).parameters] if allowed is None else list(allowed)
    for key, value in settings.items():
        if key not in allowed:
            raise ValueError(f"{where} has unknown key {key!r}; valid: {', '.join(map(str, allowed))}")
        check_setting(f"{where}.{key}", value, hints.get((aliases or {}).get(key, key)))


def check_setting(where: str, value: Any, hint: Any) -> None:
    """Check one setting against its annotated type and, by its name (``where``'s last part), against
    :data:`SIZE_LIMITS`. Annotations other than plain numbers, strings and None are not checked."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if not options or not all(option in _SETTING_TYPES for option in options):
        return
    if isinstance(value, bool):
        ok = bool in options
    elif isinstance(value, int):
        ok = int in options or float in options
    elif isinstance(value, float):
        ok = float in options
        if ok and not math.isfinite(value):
            raise ValueError(f"{where} is {value}, not a finite number")
    else:
        ok = isinstance(value, tuple(option for option in options if option in (str, type(None))))
    if not ok:
        expected = " or ".join("None" if option is type(None) else option.__name__ for option in options)
        raise ValueError(f"{where} is {_show(value)}, not {expected}")
    limit = SIZE_LIMITS.get(where.rsplit(".", 1)[-1])
    if limit is not None and isinstance(value, int) and not isinstance(value, bool) and value > limit[0]:
        raise ValueError(f"{where} is {value}, beyond the limit of {limit[0]} {limit[1]}")


def _show(value: Any) -> str:
    """A value as a message quotes it: short ones in full, long ones by their type."""
    text = repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__}"


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
