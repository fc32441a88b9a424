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
        "noise": ["random_perturbation"],
        "perturbations": [
            "DOMAINS",
            "apply_perturbation",
            "is_randomised",
            "reconstruct_perturbed",
            "zero_filled_image",
        ],
        "pgd": ["attack_gradient", "attack_loss", "pgd_image_attack", "pgd_kspace_attack"],
        "registry": ["attack_domain", "attack_protocol", "is_random_noise", "run_attack"],
    },
)
