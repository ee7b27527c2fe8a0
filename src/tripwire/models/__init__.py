"""Model side (PyTorch behind a NumPy boundary): architectures, safe loading, training."""
