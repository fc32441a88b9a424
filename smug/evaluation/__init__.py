"""Scoring reconstructions: metrics, the robustness conditions (clean, attacked, shifted), small
features, test-time training, diagnostics, confidence intervals and the fastMRI submission."""

from smug.utils.lazy import lazy_surface

# The public names, by the module that defines them; each module is imported on first use
# (smug.utils.lazy says why).
__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "claims": [
            "CLAIM_COLUMNS",
            "COMPARISON_COLUMNS",
            "NOT_RUN",
            "SCORE_COLUMNS",
            "comparison_pairs",
            "comparisons",
            "evaluate_claims",
            "score_tables",
        ],
        "diagnostics": ["CommonNoise", "diagnose", "diagnose_file", "weight_spread"],
        "metrics": ["METRIC_FUNCS", "mean_std_match", "mse", "nmse", "psnr", "ssim", "tile_scores"],
        "robustness": ["evaluate_model", "evaluate_test_time_training"],
        "scoring": [
            "ROW_COLUMNS",
            "TABLE_COLUMNS",
            "VolumeStack",
            "reconstruct_volumes",
            "save_reconstructions",
            "summarize",
            "volume_rows",
        ],
        "small_features": [
            "feature_scores",
            "feature_transform",
            "feature_window",
            "insert_features",
            "place_features",
            "ring_mask",
            "score_features",
        ],
        "statistics": ["Estimate", "crossed_interval", "mean_interval", "verdict"],
        "submission": ["SUBMISSION_SIZE", "reconstruct_files"],
    },
)
