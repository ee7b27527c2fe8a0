"""Data in and out: every dataset format becomes one :class:`Dataset`; models load safely."""

from tripwire.io.dataset import Dataset, Layout, make_dataset
from tripwire.io.loader import load_dataset, load_test_split, save_dataset

__all__ = ["Dataset", "Layout", "load_dataset", "load_test_split", "make_dataset", "save_dataset"]
