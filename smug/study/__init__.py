"""The study: which methods, attacks, claims and ablation variants the pipeline runs.

Plain data and checks, no torch: the only part of the library the Snakemake workflow imports.
"""

from smug.utils.lazy import lazy_surface

# The public names, by the module that defines them; each module is imported on first use
# (smug.utils.lazy says why).
__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "ablations": ["apply_settings", "experiment_models", "model_setup", "variant_models", "variant_name"],
        "claims": ["check_claims", "claim_kinds", "evaluated_conditions"],
        "methods": [
            "ATTACKS",
            "FIGURES",
            "KINDS",
            "METHODS",
            "NOISE_COUNTERPART",
            "PERTURBATION_LEVELS",
            "PROTOCOLS",
            "group_methods",
            "method_family",
            "method_label",
            "model_name",
            "schema_names",
            "seed_of_path",
            "spec_settings",
            "trained_methods",
        ],
    },
)
