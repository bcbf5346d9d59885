"""Benchmark scripts: speed, memory and accuracy figures measured against references."""
