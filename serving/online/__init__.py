"""The online scoring service: BentoML's thin layer (`service`) over its parts."""
