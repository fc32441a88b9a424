"""Scoring reconstructions: metrics, the robustness conditions (clean, attacked, shifted), small
features, test-time training, diagnostics, confidence intervals and the fastMRI submission."""
