"""What a reader sees: the results tables (CSV, Markdown, HTML), the training-health table and the
figures, each from the evaluation's tables."""

from smug.utils.lazy import lazy_surface

# The public names, by the module that defines them; each module is imported on first use
# (smug.utils.lazy says why).
__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "ablation_figures": ["FIGURE_KINDS", "plot_experiment"],
        "ablation_tables": ["ABLATION_COLUMNS", "ablation_table"],
        "claim_figures": ["claims_html", "plot_claims", "write_claims_html"],
        "claims": ["claims_markdown", "decided_line"],
        "curves": ["curve_y_range", "plot_metric_curves"],
        "figures": ["detection_rates", "draw_all_figures", "feature_crops"],
        "health": [
            "COLUMNS",
            "SEED_COLUMNS",
            "health_by_seed",
            "health_summary",
            "health_table",
            "unhealthy",
        ],
        "html": ["health_html", "robustness_html", "shift_html", "unhealthy_models", "write_html_tables"],
        "image_figures": ["plot_feature_crops", "plot_image_grid"],
        "plots": ["plot_masks"],
        "tables": [
            "ROBUSTNESS_COLUMNS",
            "robustness_by_seed",
            "robustness_table",
            "shift_summary",
            "wide_table",
            "write_wide_tables",
        ],
    },
)
