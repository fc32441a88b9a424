"""Package surfaces whose names are imported from their modules on first use (PEP 562).

Why: the Snakemake process imports ``smug.study`` and ``smug.data.synthetic`` without torch, and
each of the ~140 attack jobs imports ``smug.attacks`` without pandas or SciPy; an ``__init__`` that
imported all of its modules would load every dependency of every module for each of them.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_surface(
    package: str, public: dict[str, list[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``, whose public names are given by
    module (``{"fftc": ["fft2c", "ifft2c"], ...}``); a name's module is imported when it is first used."""
    home = {name: module for module, names in public.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{home[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(home)

    return __getattr__, __dir__, sorted(home)
