"""Exact cosine search over a contiguous float32 matrix (numpy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..._errors import BackendRejected, ValidationError
from ..._filters import Node, evaluate
from ..._types import FINGERPRINT_KEY, VectorHit


def stored_fingerprint(metadata: Mapping[str, Any] | None) -> str | None:
    """The ``FINGERPRINT_KEY`` value of a vector's ``metadata`` (None: no metadata), or None
    without a str one. Raises nothing."""
    value = (metadata or {}).get(FINGERPRINT_KEY)
    return value if isinstance(value, str) else None


def as_matrix(vectors: Any, dims: int | None, driver: str) -> np.ndarray:
    """``vectors`` (one vector or a sequence of them) as a float32 (n, dims) array with unit
    rows (zero rows stay zero). ``dims``: the dimension they must have (None: any).
    ``driver``: the driver name errors carry. Returns the array; raises
    ``ValidationError`` for a shape that is not 2-d, another dimension, or NaN/Infinity."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValidationError(f"vectors must be 2-d, got shape {matrix.shape}", field="vectors", driver=driver)
    if dims is not None and matrix.shape[1] != dims:
        raise ValidationError(
            f"vector dimension {matrix.shape[1]} does not match the collection's {dims}",
            field="vectors",
            driver=driver,
        )
    if not np.isfinite(matrix).all():
        raise ValidationError("vectors contain NaN or Infinity", field="vectors", driver=driver)
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))[:, None]
    norms[norms == 0] = 1.0
    unit: np.ndarray = matrix / norms
    return unit


def matrix_for(ids: list[str], vectors: Any, dims: int | None, driver: str) -> np.ndarray:
    """``as_matrix`` of ``vectors`` (with ``dims`` and ``driver``), plus one vector per id of
    ``ids``. Returns the array; raises ``ValidationError`` as ``as_matrix`` does or for
    mismatched counts."""
    matrix = as_matrix(vectors, dims, driver)
    if len(matrix) != len(ids):
        raise ValidationError(f"{len(ids)} ids but {len(matrix)} vectors", field="vectors", driver=driver)
    return matrix


def missing_vectors(ids: list[str], found: set[str], driver: str) -> None:
    """Check that every id of ``ids`` is in ``found`` (the ids with a vector): a
    metadata-only upsert needs every id to have a vector already. Returns None; raises
    ``ValidationError`` (carrying ``driver``) naming the first missing ids."""
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationError(f"metadata-only upsert for ids without a vector: {missing[:5]}", driver=driver)


class ExactIndex:
    """id -> (unit vector, metadata), searched by brute force."""

    def __init__(self, driver: str) -> None:
        """``driver``: the driver name errors carry. Starts empty, its dimension unknown."""
        self.driver = driver
        self.dims: int | None = None
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._meta: list[Mapping[str, Any]] = []

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id_: str) -> bool:
        return id_ in self._rows

    def ids(self) -> list[str]:
        """Every stored id (a new list, in storage order)."""
        return list(self._ids)

    def upsert(self, ids: Sequence[str], matrix: np.ndarray, metadata: Sequence[Mapping[str, Any]]) -> None:
        """Insert or replace the rows of ``ids``: ``matrix`` holds their unit vectors (from
        ``as_matrix``, the index's dimension), ``metadata`` their metadata. The first
        upsert fixes the dimension. Returns None; raises ``ValidationError`` for mismatched
        lengths."""
        if len(ids) != len(matrix) or len(ids) != len(metadata):
            raise ValidationError("ids, vectors and metadata must have the same length", driver=self.driver)
        if self.dims is None:
            self.dims = matrix.shape[1]
            self._matrix = np.zeros((max(16, len(ids)), self.dims), dtype=np.float32)
        for id_, vector, meta in zip(ids, matrix, metadata):
            row = self._rows.get(id_)
            if row is None:
                row = len(self._ids)
                if row == len(self._matrix):
                    grown = np.zeros((2 * len(self._matrix), self.dims), dtype=np.float32)
                    grown[:row] = self._matrix[:row]
                    self._matrix = grown
                self._rows[id_] = row
                self._ids.append(id_)
                self._meta.append(meta)
            else:
                self._meta[row] = meta
            self._matrix[row] = vector

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Copies of the stored vectors of those of ``ids`` that exist, by id."""
        return {i: self._matrix[self._rows[i]].copy() for i in ids if i in self._rows}

    def metadata(self, ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        """The stored metadata of those of ``ids`` that exist, by id."""
        return {i: self._meta[self._rows[i]] for i in ids if i in self._rows}

    def set_metadata(self, ids: Sequence[str], metadata: Sequence[Mapping[str, Any]]) -> list[str]:
        """Replace the metadata of those of ``ids`` present with ``metadata`` (aligned with
        ``ids``); return the ids that were missing (left alone)."""
        missing = []
        for id_, meta in zip(ids, metadata):
            row = self._rows.get(id_)
            if row is None:
                missing.append(id_)
            else:
                self._meta[row] = meta
        return missing

    def delete(self, ids: Sequence[str]) -> None:
        """Delete the rows of ``ids``; missing ids are not an error. Returns None."""
        for id_ in ids:
            row = self._rows.pop(id_, None)
            if row is None:
                continue
            last = len(self._ids) - 1
            if row != last:  # move the last row into the hole
                moved = self._ids[last]
                self._matrix[row] = self._matrix[last]
                self._ids[row] = moved
                self._meta[row] = self._meta[last]
                self._rows[moved] = row
            self._ids.pop()
            self._meta.pop()

    def search(self, vector: Sequence[float], limit: int, where: Node | None = None) -> list[VectorHit]:
        """The ``limit`` rows most similar to ``vector`` whose metadata match the parsed
        filter ``where`` (None: all), best first, ties by storage order. Returns the hits;
        raises ``ValidationError`` for a query of another dimension."""
        n = len(self._ids)
        if n == 0:
            return []
        query = as_matrix(vector, self.dims, self.driver)[0]
        scores = self._matrix[:n] @ query
        if where is not None:
            mask = np.fromiter((evaluate(where, m) for m in self._meta), dtype=bool, count=n)
            candidates = np.flatnonzero(mask)
            scores = scores[candidates]
        else:
            candidates = None
        k = min(limit, len(scores))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]  # best first; ties stable
        rows = top if candidates is None else candidates[top]
        return [VectorHit(self._ids[r], float(s)) for r, s in zip(rows, scores[top])]

    def check_dims(self, dims: int) -> None:
        """Refuse ``dims`` other than the index's dimension (once known). Returns None; raises
        ``BackendRejected``."""
        if self.dims is not None and dims != self.dims:
            raise BackendRejected(f"dimension {dims} != {self.dims}", driver=self.driver)
