"""Training command-line programs (python -m train.<name>)."""
