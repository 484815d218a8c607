"""How the local vector store keeps a vector in a SQLite blob: float32 (4 bytes a dimension)
or float16 (2 bytes a dimension plus one marker byte). The odd length tells a float16 blob
from a float32 one (always a multiple of 4) without knowing the collection's dimension, so
a collection written with either ``vector_dtype`` reads back whatever the setting is now."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DTYPES = ("float32", "float16")  #: the accepted ``vector_dtype`` values
_HALF = b"\x10"  #: the marker ending a float16 blob (makes its length odd)


def encode(vector: np.ndarray, dtype: str) -> bytes:
    """The blob of ``vector`` (float32) stored as ``dtype`` (one of ``DTYPES``)."""
    if dtype == "float16":
        return vector.astype(np.float16).tobytes() + _HALF
    return vector.astype(np.float32, copy=False).tobytes()


def as_stored(matrix: np.ndarray, dtype: str) -> np.ndarray:
    """``matrix`` (float32) as it reads back once stored as ``dtype``: what this process
    indexes too, so that scores do not change when another process, or a reopen, reads the
    vectors back."""
    return matrix.astype(np.float16).astype(np.float32) if dtype == "float16" else matrix


def decode(blob: bytes) -> np.ndarray:
    """The float32 vector a ``blob`` written by ``encode`` holds (either dtype)."""
    if len(blob) % 2:
        return np.frombuffer(blob, dtype=np.float16, count=len(blob) // 2).astype(np.float32)
    return np.frombuffer(blob, dtype=np.float32)


def decode_matrix(blobs: Sequence[bytes]) -> np.ndarray:
    """The float32 matrix of ``blobs`` (one row each; all of one dimension, either dtype)."""
    sizes = {len(b) for b in blobs}
    if len(sizes) == 1:  # the usual case: one dtype, decoded without a Python loop
        size = sizes.pop()
        joined = b"".join(blobs)
        if size % 2 == 0:
            return np.frombuffer(joined, dtype=np.float32).reshape(len(blobs), -1)
        rows = np.frombuffer(joined, dtype=np.uint8).reshape(len(blobs), size)[:, :-1]
        return np.ascontiguousarray(rows).view(np.float16).astype(np.float32)
    return np.stack([decode(b) for b in blobs])
