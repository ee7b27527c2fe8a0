"""Detectors of backdoors: in training data, in models and in inputs at run time."""
