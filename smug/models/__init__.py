"""Networks: the denoisers used inside the unrolled reconstructions and Weighted SMUG's scorer.

All take and return real tensors ``(B, C, H, W)``; complex images cross into this form through
:func:`smug.mri.transforms.complex_to_channels`.
"""

from smug.utils.lazy import lazy_surface

# The public names, by the module that defines them; each module is imported on first use
# (smug.utils.lazy says why).
__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "classical": ["CompressedSensing", "METHODS", "check_solver_options", "from_record", "to_record"],
        "cs_solvers": [
            "TV_SOLVERS",
            "l1_wavelet_objective",
            "l1_wavelet_recon",
            "lipschitz_bound",
            "total_variation",
            "tv_objective",
            "tv_recon",
        ],
        "denoisers": ["DENOISERS", "build_denoiser", "count_parameters"],
        "didn": ["DIDN", "DownUpBlock"],
        "diffusion": [
            "DiffusionReconstructor",
            "NoiseConditionalDenoiser",
            "noise_levels",
            "score_matching_loss",
        ],
        "dncnn": ["DnCNN"],
        "e2e_unet": ["ZeroFilledUNet"],
        "fastmri_checkpoints": ["PUBLISHED_SIZES", "build_fastmri_model", "load_fastmri_checkpoint"],
        "factory": [
            "BACKBONE_NETWORKS",
            "FAMILY_MODELS",
            "MODEL_KINDS",
            "ModelFileError",
            "backbone_of",
            "build_model",
            "data_consistency_weight",
            "denoiser_of",
            "load_method",
            "perturbation_generator",
            "read_record",
            "record_kind",
            "unrolled_core",
        ],
        "generator": ["PerturbationGenerator"],
        "ista_net": ["ISTANetPlus", "symmetry_loss"],
        "modl": ["MoDL", "RSE2E"],
        "smoothing": [
            "SmoothingTrace",
            "complex_gaussian",
            "denoise_complex",
            "denoise_in_chunks",
            "smoothed_denoise",
        ],
        "unet": ["UNet"],
        "unrolled": ["SmoothedUnrolling", "UnrollTrace", "set_memory", "without_smoothing"],
        "untrained": ["ConvDecoder", "UntrainedNetwork", "fit_untrained", "slice_seed"],
        "weight_encoder": ["WeightEncoder"],
        "varnet": ["E2EVarNet", "NormUNet", "SensitivityNet"],
        "zero_filled": ["ZeroFilled"],
    },
)
