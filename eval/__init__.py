"""Evaluation command-line programs (python -m eval.<name>)."""
