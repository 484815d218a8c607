"""Driver contracts; importing this package imports no backend client."""

from .base import Embedder, PrimaryDriver, VectorDriver

__all__ = ["Embedder", "PrimaryDriver", "VectorDriver"]
