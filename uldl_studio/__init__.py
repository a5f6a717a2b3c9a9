"""ULDL Studio: uncertainty-aware label distributions for facial-expression datasets."""

__version__ = "0.1.0"
