"""The nightly job: every customer scored, published as a run and into the scores store."""
