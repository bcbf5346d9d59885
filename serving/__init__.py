"""Scoring: the scorer, retention policy, batch job, online service and report."""
