"""Running an attack by name: which function computes each attack of
:data:`smug.study.attacks.ATTACKS`, the arguments its name fixes, and how a table row's
perturbation was made (its protocol)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from smug.data import Batch
from smug.study import ATTACKS, PROTOCOLS, Attack, transferred_methods
from smug.attacks.noise import random_perturbation
from smug.attacks.pgd import pgd_image_attack, pgd_kspace_attack

# How each algorithm of the attack table (smug.study.attacks) runs in each domain; the random
# perturbations are one function of both domains.
_PGD = {"kspace": pgd_kspace_attack, "image": pgd_image_attack}


# The SMUG papers' own attack protocols (smug.study.attacks.PROTOCOLS) keep the authors' PGD settings, not
# evaluation.pgd's, so a reviewer can tell a real robustness gain from a weak attack:
# - journal: l_inf PGD on the sampled k-space through the smoothed model with ONE noise draw per
#   step (no expectation over noise), 10 steps of eps/3 from a random start (uniform in the box
#   here; the code draws a Gaussian start clamped to the box);
# - conference: l_inf PGD on the zero-filled image computed on the network WITHOUT smoothing
#   (``surrogate="unsmoothed"``), then applied to the smoothed network: a transfer attack.
# On a deterministic model both are plain 10-step white-box PGD.
def attack_protocol(name: str, model: str | None = None) -> str:
    """How a table row's perturbation was made: a paper protocol, white-box PGD with EOT, random
    noise, a trained generator's transfer, no perturbation ("clean"), or a distribution "shift".
    An attack on a ``model`` no gradient reaches (:func:`smug.study.transfer_section`: the untrained
    network, the diffusion sampler) was computed on another model: ``transfer``."""
    transferred = model is not None and model.split("@", 1)[0] in transferred_methods()
    if transferred and name in ATTACKS and not is_random_noise(name):
        return "transfer"
    if name in PROTOCOLS:
        return name.rsplit("_", 1)[-1] + " protocol"
    if name in ATTACKS:
        return "random noise" if is_random_noise(name) else "white-box (EOT)"
    if name.startswith("generator_"):
        return "generator transfer"
    return "clean" if name == "clean" else "shift"


def is_random_noise(name: str) -> bool:
    """Whether ``name`` is a model-independent random perturbation (computed once for all models)."""
    return _lookup(name).algorithm == "noise"


def attack_domain(name: str) -> str:
    """The domain ("kspace" or "image") of the perturbations the attack ``name`` produces."""
    return _lookup(name).domain


def fixed_arguments(name: str) -> dict[str, Any]:
    """The arguments the attack's name fixes: its norm ball, the domain of a random perturbation
    (PGD's is its function's) and ``relative`` where the radius scales with ``||y||``."""
    attack = _lookup(name)
    fixed: dict[str, Any] = {"norm": attack.norm}
    if attack.algorithm == "noise":
        fixed["domain"] = attack.domain
    if attack.relative:
        fixed["relative"] = True
    return fixed


def run_attack(
    name: str,
    model: nn.Module | None,
    batch: Batch,
    eps: float,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Run the attack ``name`` of :data:`smug.study.attacks.ATTACKS` with its fixed arguments plus
    ``kwargs``.

    ``model`` is ignored by the random perturbations. ``kwargs`` may not contradict the attack's
    fixed arguments, and for random perturbations only ``relative`` is accepted beyond them (PGD
    settings such as ``steps`` are rejected, naming the argument).
    """
    attack, fixed = _lookup(name), fixed_arguments(name)
    for key, value in kwargs.items():
        if key in fixed and fixed[key] != value:
            raise ValueError(f"attack {name!r} fixes {key}={fixed[key]!r}; got {key}={value!r}")
    arguments = {**kwargs, **fixed}
    if attack.algorithm == "noise":
        unknown = sorted(set(arguments) - {"norm", "domain", "relative"})
        if unknown:
            raise ValueError(f"attack {name!r} (random noise) takes no argument(s) {', '.join(unknown)}")
        return random_perturbation(batch, eps, generator=generator, **arguments)
    if model is None:
        raise ValueError(f"attack {name!r} needs a model")
    return _PGD[attack.domain](model, batch, eps, generator=generator, **arguments)


def _lookup(name: str) -> Attack:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    return ATTACKS[name]
