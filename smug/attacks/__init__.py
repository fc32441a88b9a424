"""Attacks on a reconstruction: perturbation geometry, PGD in k-space and image space, random
noise of the same size, the papers' protocols and the files attacks are stored in."""

from smug.utils.lazy import lazy_surface

# The public names, by the module that defines them; each module is imported on first use
# (smug.utils.lazy says why).
__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "files": ["ATTACK_ATTRS", "load_attack", "save_attack"],
        "generation": ["compute_attack"],
        "generator_transfer": ["kspace_perturbation", "perturb_input"],
        "perturbations": [
            "DOMAINS",
            "apply_perturbation",
            "attack_domain",
            "attack_gradient",
            "attack_loss",
            "attack_protocol",
            "is_randomised",
            "pgd_image_attack",
            "pgd_kspace_attack",
            "random_perturbation",
            "reconstruct_perturbed",
            "run_attack",
            "zero_filled_image",
        ],
    },
)
