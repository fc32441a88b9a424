"""The ISMRMRD header of a fastMRI file: the encoded and reconstructed matrix sizes and the limits
of the phase-encode lines actually acquired, and the zero padding outside them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"


@dataclass(frozen=True)
class EncodingInfo:
    """The parts of the ISMRMRD header a reconstruction needs.

    ``enc_size`` and ``recon_size`` are ``(x, y, z)`` matrix sizes, x the readout (k-space rows) and
    y the phase-encode axis (k-space columns). Columns outside ``[padding_left, padding_right)`` of
    the k-space are zero padding that was never acquired (fastMRI's ``_retrieve_metadata``).
    """

    enc_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    padding_left: int
    padding_right: int


def zero_kspace_padding(kspace: Any, encoding: EncodingInfo | tuple[int, int]) -> Any:
    """Zero the k-space columns outside ``[padding_left, padding_right)``, which were never acquired.

    fastMRI's VarNet transform zeroes its mask there; zeroing the data itself makes every later step
    (crop, normalisation, masks) independent of whatever a file stores in those columns. Bounds are
    clipped to ``[0, W]`` (headers may place them outside the stored grid).

    Args:
        kspace: numpy array or torch tensor ``(..., W)``; not modified.
        encoding: the volume's :class:`EncodingInfo`, or ``(padding_left, padding_right)``.

    Returns:
        a copy of ``kspace`` of the same type with the padding columns zero.

    Raises:
        ValueError: the clipped bounds leave no column.
    """
    if isinstance(encoding, EncodingInfo):
        left, right = encoding.padding_left, encoding.padding_right
    else:
        left, right = (int(bound) for bound in encoding)
    width = kspace.shape[-1]
    left, right = min(max(left, 0), width), min(max(right, 0), width)
    if left >= right:
        raise ValueError(
            f"k-space padding bounds {(left, right)} (clipped to [0, {width}]) leave no acquired column"
        )
    out = np.array(kspace, copy=True) if isinstance(kspace, np.ndarray) else kspace.clone()
    out[..., :left] = 0
    out[..., right:] = 0
    return out


def parse_ismrmrd_header(xml: bytes | str) -> EncodingInfo:
    """Parse the encoded/recon matrix sizes and k-space padding from an ISMRMRD XML header.

    Raises:
        ValueError: not XML, not an ``ismrmrdHeader``, or a required field missing or not an integer.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValueError(f"ismrmrd_header is not valid XML ({exc})") from None
    namespace = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    if root.tag != f"{namespace}ismrmrdHeader":
        raise ValueError(f"ismrmrd_header root element is {root.tag!r}, expected 'ismrmrdHeader'")

    def integer(*names: str) -> int:
        query = "/".join(f"{namespace}{name}" for name in ("encoding",) + names)
        element = root.find(query)
        field = "/".join(("encoding",) + names)
        if element is None or element.text is None:
            raise ValueError(f"ismrmrd_header lacks {field}")
        try:
            return int(element.text.strip())
        except ValueError:
            raise ValueError(f"ismrmrd_header field {field} is not an integer: {element.text!r}") from None

    enc_size = tuple(integer("encodedSpace", "matrixSize", axis) for axis in "xyz")
    recon_size = tuple(integer("reconSpace", "matrixSize", axis) for axis in "xyz")
    center = integer("encodingLimits", "kspace_encoding_step_1", "center")
    maximum = integer("encodingLimits", "kspace_encoding_step_1", "maximum")
    padding_left = enc_size[1] // 2 - center
    return EncodingInfo(
        enc_size=enc_size,  # type: ignore[arg-type]
        recon_size=recon_size,  # type: ignore[arg-type]
        padding_left=padding_left,
        padding_right=padding_left + maximum + 1,
    )
