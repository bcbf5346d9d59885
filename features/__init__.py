"""Data contract, loading, point-in-time features, labels and demo data."""
