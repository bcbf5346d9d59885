"""Training sets, tuning, evaluation, baselines and the model registry."""
