"""Buy-till-you-die baselines (BG/NBD, Pareto/NBD, Gamma-Gamma) fitted by maximum likelihood."""
