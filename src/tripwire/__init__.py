"""tripwire: detect data poisoning, backdoors and model extraction across the ML lifecycle."""

__version__ = "0.1.0"

__all__ = ["__version__"]
