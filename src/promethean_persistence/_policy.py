"""Which entries get a vector, and whether images are embedded: one rule for the store, the
copier and re-embedding."""

from __future__ import annotations

from ._config import StoreConfig
from ._types import Record
from .drivers.base import Embedder


def supports_images(embedder: Embedder, config: StoreConfig) -> bool:
    """Whether image entries are embedded as images: ``config``'s ``supports_images`` says
    so, else the ``embedder`` does (it must have the ``images`` capability either way).
    Returns a bool; raises nothing."""
    wanted = embedder.supports_images if config.supports_images is None else config.supports_images
    return bool(wanted) and embedder.capabilities.images


def wants_vector(record: Record, *, enabled: bool, images: bool) -> bool:
    """Whether ``record`` gets a vector: not when vector writes are off (``enabled`` False),
    its text is empty, or it is an image (``metadata.type == "image"``) and ``images`` is
    False (the embedder does not take images). Returns a bool; raises nothing."""
    return enabled and not record.is_empty and (images or record.metadata.get("type") != "image")
