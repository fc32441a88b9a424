"""Accelerator options: bf16 mixed precision, channels-last convolutions, cuDNN autotuning, pinned memory.

All options default to off, and off means the code path of a run without them.

Mixed precision is confined to the real-valued networks (denoisers, U-Nets, the weight encoder):
the models pass complex images through ``complex_to_channels`` into those networks and everything
else (FFTs, SENSE operators, the conjugate gradient, losses) works on complex64 tensors. A global
``torch.autocast`` around a MoDL forward is not enough: a network whose last layer is a convolution
(the U-Net) then returns bfloat16 channels, which ``torch.complex`` rejects, and ``torch.fft`` has no
bfloat16 kernels either. So :func:`network_autocast` runs each network's forward under
:func:`autocast` and casts its floating outputs back to float32 at the network's boundary; data
consistency, losses and SSIM (whose variance subtraction would lose most of its digits in bfloat16)
never see reduced precision.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, fields
from typing import Any, ContextManager, Iterator, Mapping

import torch
from torch import nn

from smug.models import DIDN, DnCNN, UNet, WeightEncoder

LOG = logging.getLogger(__name__)

AMP_MODES = ("off", "bf16")

# The networks that take real/imaginary channels at their boundary; the only places autocast applies.
CHANNEL_NETWORKS: tuple[type[nn.Module], ...] = (DnCNN, DIDN, UNet, WeightEncoder)


@dataclass(frozen=True)
class PerformanceOptions:
    """Speed options of training (config section ``training``) and of the benchmarks.

    Attributes:
        amp: "off", or "bf16" for bfloat16 autocast inside the real-valued networks.
        channels_last: convolution weights and network inputs in NHWC memory format.
        cudnn_benchmark: let cuDNN time its convolution algorithms (CUDA only; input shapes are
            fixed within a run, so the search pays off after the first batches).
        pin_memory: page-locked DataLoader batches for faster host-to-GPU copies (CUDA only).
    """

    amp: str = "off"
    channels_last: bool = False
    cudnn_benchmark: bool = False
    pin_memory: bool = False

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise ValueError(f"unknown amp mode {self.amp!r}; valid: {', '.join(AMP_MODES)}")
        for name in ("channels_last", "cudnn_benchmark", "pin_memory"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"performance option {name} must be true or false, got {getattr(self, name)!r}"
                )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> PerformanceOptions:
        """Options from a mapping with any subset of the field names (None: all off).

        Raises:
            ValueError: an unknown key or an invalid value (the message names it).
        """
        values = dict(values or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown performance option(s) {', '.join(unknown)}; valid: {', '.join(known)}")
        return cls(**values)


def configure_backends(options: PerformanceOptions, device: torch.device) -> None:
    """Set ``torch.backends.cudnn.benchmark`` from the options on CUDA; nothing on CPU."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = options.cudnn_benchmark


def autocast(options: PerformanceOptions, device: torch.device) -> ContextManager:
    """bfloat16 autocast on ``device``'s type when ``options.amp == "bf16"``, else a no-op context.

    Use it around real-valued network code only (see the module docstring); :func:`network_autocast`
    does that for a whole model.

    Raises:
        ValueError: bf16 requested on a GPU without bfloat16 support.
    """
    if options.amp == "off":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    if device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"amp='bf16' requested but {torch.cuda.get_device_name()} does not support bfloat16")
    return torch.autocast(device_type, dtype=torch.bfloat16)


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store the 4-D parameters and buffers (convolution weights) of ``module`` in NHWC format, in place.

    Values and ``state_dict`` keys are unchanged; only the memory layout of the weights differs.
    """
    return module.to(memory_format=torch.channels_last)


def channel_networks(model: nn.Module) -> list[nn.Module]:
    """The outermost :data:`CHANNEL_NETWORKS` inside ``model`` (``model`` itself if it is one)."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        if isinstance(module, CHANNEL_NETWORKS):
            found.append(module)
            return
        for child in module.children():
            visit(child)

    visit(model)
    return found


@contextlib.contextmanager
def network_autocast(model: nn.Module, options: PerformanceOptions, device: torch.device) -> Iterator[None]:
    """While active, every channel network of ``model`` runs under :func:`autocast` and returns float32.

    With ``channels_last`` its 4-D inputs are also handed over in NHWC format (call
    :func:`to_channels_last` on the model once for the weights). With every relevant option off this
    is a no-op context and the model is not touched. The networks' original ``forward`` is restored
    on exit, also after an exception.
    """
    if options.amp == "off" and not options.channels_last:
        yield
        return
    networks = channel_networks(model)
    if not networks:
        LOG.warning(
            "%s has no convolutional network to accelerate; amp/channels_last ignored", type(model).__name__
        )
    for network in networks:
        # An instance attribute shadows the class's forward; deleting it restores the original.
        network.forward = _wrap_forward(network.forward, options, device)
    try:
        yield
    finally:
        for network in networks:
            if "forward" in vars(network):
                del network.forward


def _wrap_forward(forward, options: PerformanceOptions, device: torch.device):
    def accelerated_forward(*args: Any, **kwargs: Any) -> Any:
        if options.channels_last:
            args = tuple(_channels_last_input(a) for a in args)
        with autocast(options, device):
            out = forward(*args, **kwargs)
        return _to_float32(out)

    return accelerated_forward


def _channels_last_input(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.ndim == 4 and value.is_floating_point():
        return value.contiguous(memory_format=torch.channels_last)
    return value


def _to_float32(value: Any) -> Any:
    # Only reduced precision is widened: a float64 network stays float64.
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in (torch.bfloat16, torch.float16) else value
    if isinstance(value, tuple):
        return tuple(_to_float32(v) for v in value)
    if isinstance(value, list):
        return [_to_float32(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    return value
