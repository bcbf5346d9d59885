"""The retention policy: its file model, its triggers and applying it to scored customers."""
