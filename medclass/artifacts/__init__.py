"""Artifacts of a run: the checkpoint format and the run folder layout."""
