"""The study: which methods, attacks, claims and ablation variants the pipeline runs.

Plain data and checks, no torch: the only part of the library the Snakemake workflow imports.
"""

from smug.utils.lazy import lazy_surface

# The public names, by the module that defines them; each module is imported on first use
# (smug.utils.lazy says why).
__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "ablations": [
            "apply_settings",
            "backbone_models",
            "experiment_models",
            "model_setup",
            "variant_models",
            "variant_name",
        ],
        "attacks": [
            "ATTACKS",
            "Attack",
            "NOISE_ATTACKS",
            "NOISE_COUNTERPART",
            "PERTURBATION_LEVELS",
            "PROTOCOLS",
            "WHITE_BOX_ATTACKS",
        ],
        "claim_types": ["ClaimKind", "claim_kinds"],
        "claims": ["check_claims", "evaluated_conditions", "same_level", "validate_claims"],
        "methods": [
            "BACKBONES",
            "DENOISER_BACKBONE",
            "DENOISER_NAMES",
            "FAMILIES",
            "FIGURES",
            "KINDS",
            "Kind",
            "METHODS",
            "ancestors",
            "check_backbone",
            "group_methods",
            "method_family",
            "method_label",
            "model_name",
            "pretrained_methods",
            "schema_names",
            "seed_of_path",
            "seeded",
            "spec_settings",
            "start_method",
            "trained_methods",
            "transfer_section",
            "transferred_methods",
            "unrolled_methods",
        ],
    },
)
