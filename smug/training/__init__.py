"""Training: the loop, the pipeline's stages (pre-training, fine-tuning, baselines), the
objectives and losses, min-max training, data parallel, accelerator options and CS tuning."""
