"""Training: the loop, the pipeline's stages (pre-training, fine-tuning, baselines), the
objectives and losses, min-max training, data parallel, accelerator options and CS tuning."""

from smug.utils.lazy import lazy_surface

# The public names, by the module that defines them; each module is imported on first use
# (smug.utils.lazy says why).
__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "accelerator": [
            "AMP_MODES",
            "PerformanceOptions",
            "autocast",
            "channel_networks",
            "configure_backends",
            "network_autocast",
            "to_channels_last",
        ],
        "cs_tuning": ["tune_regularization"],
        "distributed": [
            "Ranks",
            "SINGLE",
            "ShardSampler",
            "ranks_from_environment",
            "shard",
            "start",
            "stop",
        ],
        "loop": ["NonFiniteLossError", "TrainSettings", "fit"],
        "losses": ["SSIMLoss", "get_loss", "l1_loss", "mse_loss", "ssim_loss"],
        "minmax": [
            "MinMaxObjective",
            "generator_ascent_step",
            "hinge_penalty",
            "minmax_step",
            "reconstructor_objective",
        ],
        "objectives": ["complex_mse", "end_to_end_loss", "unrolled_stability_loss"],
        "stages": ["checkpoint_identity", "initialise", "loss_for", "train_stage"],
    },
)
