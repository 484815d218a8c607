"""Deterministic hashed bag-of-words embedder. NOT semantic: for tests and demos only.

Texts sharing words (and word pieces) get similar vectors, so lexical overlap ranks first;
synonyms do not. Same input, same vector, in every process (blake2b, not hash()).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..base import Capabilities

if TYPE_CHECKING:
    from ..._config import StoreConfig

_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Test-only embedder: hashed word and character-trigram counts, L2-normalised."""

    name: ClassVar[str] = "hashing"
    capabilities: ClassVar[Capabilities] = Capabilities(in_process=True)
    supports_images = False
    normalize = True

    def __init__(self, dimensions: int = 256) -> None:
        """``dimensions`` is the size of the vectors made."""
        self.dimensions = dimensions
        self.model = f"hashing-v1-{dimensions}"

    @classmethod
    def from_config(cls, config: StoreConfig) -> HashingEmbedder:
        # the model name says the size, so a manifest's model name rebuilds this embedder
        """See ``Embedder.from_config``."""
        match = re.fullmatch(r"hashing-v1-(\d+)", config.embedding_function or "")
        return cls(int(match[1]) if match else config.hashing.dimensions)

    def embed_one(self, text: str) -> np.ndarray:
        """The unit vector of ``text``: its hashed word and trigram counts, L2-normalised."""
        vector = np.zeros(self.dimensions, dtype=np.float32)
        dims = self.dimensions
        for word in _TOKEN.findall(text.lower()):
            for bucket, weight in _word_features(word):
                vector[bucket % dims] += weight
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:  # no word characters: a fixed unit vector, still deterministic
            vector[_hash(text) % dims] = 1.0
            return vector
        return vector / norm

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """See ``Embedder.embed``."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.stack([self.embed_one(t) for t in texts])

    async def aclose(self) -> None:
        """See ``Embedder.aclose``."""
        pass


def _hash(feature: str) -> int:
    return int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")


@lru_cache(maxsize=1 << 16)
def _word_features(word: str) -> tuple[tuple[int, float], ...]:
    """(bucket, signed weight) of a word and its character trigrams; words repeat, so cached."""
    padded = f"#{word}#"
    features = [(word, 1.0)] + [(padded[i : i + 3], 0.25) for i in range(len(padded) - 2)]
    out = []
    for feature, weight in features:
        h = _hash(feature)
        out.append((h, weight if h >> 63 else -weight))
    return tuple(out)
