"""What a reader sees: the results tables (CSV, Markdown, HTML), the training-health table and the
figures, each from the evaluation's tables."""
