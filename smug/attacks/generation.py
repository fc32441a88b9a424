"""Attack generation: one attack's perturbations of every test slice, at each strength of its grid.

Kept apart from :mod:`smug.evaluation.robustness` (evaluation) so that an attack job imports only what it
runs: pandas and the small-feature test's SciPy cost each of the ~140 attack jobs of the default
run about 0.3 s of start-up.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from smug.attacks.registry import attack_domain, attack_protocol, is_random_noise, run_attack
from smug.attacks.files import save_attack
from smug.data import collate, make_dataset
from smug.models import load_method, set_memory, without_smoothing
from smug.study import ATTACKS, PROTOCOLS, model_name
from smug.utils import epoch_seed

LOG = logging.getLogger(__name__)


def compute_attack(
    *,
    attack: str,
    eps: Sequence[float],
    model: str | None,
    test: Sequence[str],
    mask: str,
    sens_dir: str | Sequence[str] | None,
    test_slices: int | None,
    steps: int,
    step_factor: float | None,
    random_start: bool,
    loss_target: str,
    eot_samples: int,
    batch_size: int,
    seed: int,
    out: str,
    device: torch.device,
    checkpoint_unrolls: bool = False,
    sample_chunk: int | None = None,
) -> None:
    """Perturb every test slice with ``attack`` at each ``eps`` and save them to ``out``;
    ``checkpoint_unrolls`` and ``sample_chunk`` bound the memory of its backward passes
    (:func:`smug.models.set_memory`)."""
    noise_only = is_random_noise(attack)
    if model is None and not noise_only:
        raise ValueError(f"attack {attack!r} is white-box and needs --model")
    net, name = (None, "none") if noise_only else (load_method(model, device)[0], model_name(model))
    if net is not None:
        set_memory(net, checkpoint_unrolls, sample_chunk)
    protocol = PROTOCOLS.get(attack)
    if protocol is not None:
        # A paper protocol fixes its own PGD settings; the command line's do not apply.
        steps, loss_target, eot_samples = protocol["steps"], protocol["loss_target"], protocol["eot_samples"]
        step_factor, random_start = None, protocol["random_start"]
        if protocol["surrogate"] == "unsmoothed":
            net = without_smoothing(net)
        LOG.info("%s: the paper protocol's settings %s", attack, protocol)
    dataset = make_dataset(test, test_slices, mask, sens_dir)
    levels = []
    for level, strength in enumerate(eps):
        generator = torch.Generator(device=device).manual_seed(epoch_seed(seed, level, 7))
        pgd = (
            {}
            if noise_only
            else dict(
                steps=steps,
                step_size=None if step_factor is None else step_factor * strength,
                random_start=random_start,
                loss_target=loss_target,
                eot_samples=eot_samples,
            )
        )
        deltas, fnames, slices = [], [], []
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
            batch = batch.to(device)
            deltas.append(run_attack(attack, net, batch, strength, generator, **pgd).cpu())
            fnames += batch.fnames
            slices += [int(s) for s in batch.slices]
        LOG.info("%s on %s: eps=%g done (%d slices)", attack, name, strength, len(fnames))
        attrs = {
            "eps": float(strength),
            "norm": ATTACKS[attack].norm,
            "steps": None if noise_only else steps,
            "step_size": None if noise_only or step_factor is None else step_factor * strength,
            "seed": seed,
            "domain": attack_domain(attack),
            "relative": ATTACKS[attack].relative,
            "loss_target": None if noise_only else loss_target,
            "eot_samples": None if noise_only else eot_samples,
            "model": name,
            "attack": attack,
            "protocol": attack_protocol(attack),
            "fname": fnames,
            "slice": slices,
        }
        levels.append((torch.cat(deltas), attrs))
    save_attack(out, levels)
