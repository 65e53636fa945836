"""Target-model zoos: architectures, the registry of trained models split into surrogates and held-out
targets, and the guard that keeps meta-training and tuning away from held-out targets."""
