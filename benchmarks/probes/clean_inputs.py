"""The clean inputs a model probe reads: a test split's stratified subset and the model's
torch module."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tripwire.detectors.backdoor.reverse import torch_module
from tripwire.io import load_dataset
from tripwire.models.loading import load_model
from tripwire.scan.model import stratified_subset


def clean_inputs(
    model_path: str, data: str, per_class: int, seed: int
) -> tuple[Any, torch.Tensor, np.ndarray, int]:
    """The model's torch module, ``per_class`` test images of each class (a tensor) with
    their labels, and the number of classes."""
    ds = load_dataset(data, split="test")
    n_cls = int(ds.y.max()) + 1
    sub = stratified_subset(ds.y, per_class * n_cls, seed)
    x = torch.from_numpy(np.ascontiguousarray(ds.model_input(sub), dtype=np.float32))
    net = torch_module(load_model(model_path, input_shape=ds.input_shape))
    return net, x, ds.y[sub], n_cls
