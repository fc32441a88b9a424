"""Every perturbation of the robustness study, declared once: what each attack is (algorithm,
domain, norm ball), its random-noise counterpart, the paper protocol it follows and how its level
is labelled. :mod:`smug.attacks` runs them, the workflow schedules them, the tables and figures
label them, and the config schema's attack enum is filled from this table.

Plain data, no torch (the workflow imports it to build the DAG).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    """A perturbation of the robustness study.

    Attributes:
        algorithm: ``pgd`` (white-box projected gradient ascent on the reconstruction error) or
            ``noise`` (a random point of the same ball, the same for every model).
        domain: where the perturbation is added: ``kspace`` (the sampled measurements) or
            ``image`` (the zero-filled image ``A^H y``).
        norm: the ball, ``linf`` or ``l2``.
        relative: whether the radius is ``eps * ||y||`` per slice rather than ``eps``.
        level: what the level (eps) measures, as axis labels and table notes print it.
        noise: the random-noise attack of the same ball (the average case beside the worst), or
            None for a random-noise attack itself.
        protocol: the PGD settings of a SMUG paper's own protocol, fixed here rather than taken
            from ``evaluation.pgd`` (see :mod:`smug.attacks.perturbations`), or None.
    """

    algorithm: str
    domain: str
    norm: str
    level: str
    relative: bool = False
    noise: str | None = None
    protocol: dict | None = None


# The SMUG papers' protocols: journal, l_inf PGD on k-space through the smoothed model with one noise
# draw per step; conference, l_inf PGD on the zero-filled image of the network without smoothing,
# transferred to the smoothed one. 10 steps of eps/3 from a random start, as in the authors' code.
_JOURNAL = {"steps": 10, "step_size": None, "random_start": True, "loss_target": "gt", "eot_samples": 1}

_KSPACE_LINF = "eps (l_inf, normalised k-space)"
_KSPACE_L2 = "eps (l_2, normalised k-space)"
_IMAGE_LINF = "eps (l_inf, zero-filled image)"
_RELATIVE_L2 = "eps (||e|| / ||y||)"

ATTACKS: dict[str, Attack] = {
    "pgd_kspace_linf": Attack("pgd", "kspace", "linf", _KSPACE_LINF, noise="noise_kspace_linf"),
    "pgd_kspace_l2": Attack("pgd", "kspace", "l2", _KSPACE_L2, noise="noise_kspace_l2"),
    "pgd_image_linf": Attack("pgd", "image", "linf", _IMAGE_LINF, noise="noise_image_linf"),
    "pgd_relative_l2": Attack("pgd", "kspace", "l2", _RELATIVE_L2, relative=True, noise="noise_relative_l2"),
    "pgd_kspace_linf_journal": Attack(
        "pgd",
        "kspace",
        "linf",
        "eps (l_inf, normalised k-space; journal protocol)",
        noise="noise_kspace_linf",
        protocol={**_JOURNAL, "surrogate": None},
    ),
    "pgd_image_linf_conference": Attack(
        "pgd",
        "image",
        "linf",
        "eps (l_inf, zero-filled image; conference protocol, transfer)",
        noise="noise_image_linf",
        protocol={**_JOURNAL, "surrogate": "unsmoothed"},
    ),
    "noise_kspace_linf": Attack("noise", "kspace", "linf", _KSPACE_LINF),
    "noise_kspace_l2": Attack("noise", "kspace", "l2", _KSPACE_L2),
    "noise_relative_l2": Attack("noise", "kspace", "l2", _RELATIVE_L2, relative=True),
    "noise_image_linf": Attack("noise", "image", "linf", _IMAGE_LINF),
}
# Random noise of the same norm ball as each white-box attack: the average case beside the worst.
NOISE_COUNTERPART = {name: a.noise for name, a in ATTACKS.items() if a.noise is not None}
PROTOCOLS = {name: a.protocol for name, a in ATTACKS.items() if a.protocol is not None}
# White-box attacks taking their PGD settings from evaluation.pgd, and the random-noise ones.
WHITE_BOX_ATTACKS = tuple(name for name, a in ATTACKS.items() if a.algorithm == "pgd" and a.protocol is None)
NOISE_ATTACKS = tuple(name for name, a in ATTACKS.items() if a.algorithm == "noise")

# What every perturbation's level measures: the attacks' eps, then the shifts' own axes.
PERTURBATION_LEVELS = {
    **{name: attack.level for name, attack in ATTACKS.items()},
    "acceleration": "acceleration",
    "unrolls": "number of unrolls",
    "small_feature": "feature size (pixels)",
}
