"""Behaviour every Embedder must show."""

from __future__ import annotations

from typing import cast

import numpy as np

from ..drivers.base import Embedder, ProbingEmbedder, QueryEmbedder, Warmable
from .capabilities import check_declared


class EmbedderSuite:
    """Subclass and provide an ``embedder`` fixture."""

    async def test_declared_capabilities_hold(self, embedder: Embedder) -> None:
        check_declared(embedder, "embedder")
        assert isinstance(embedder.normalize, bool)
        if embedder.capabilities.warm:
            warmable = cast(Warmable, embedder)
            await warmable.warm()
            await warmable.warm()  # once loaded, again is free
        if embedder.capabilities.query_embedding:
            out = np.asarray(await cast(QueryEmbedder, embedder).embed_queries(["a question"]))
            assert out.shape == (1, embedder.dimensions)

    async def test_declares_model_and_dimensions(self, embedder: Embedder) -> None:
        assert isinstance(embedder.model, str) and embedder.model
        if embedder.dimensions is None:  # a served model of unknown size: asking once tells
            await cast(ProbingEmbedder, embedder).probe()
        assert isinstance(embedder.dimensions, int) and embedder.dimensions > 0
        assert isinstance(embedder.supports_images, bool)

    async def test_batch_shape_and_unit_rows(self, embedder: Embedder) -> None:
        out = np.asarray(await embedder.embed(["one text", "another text", "a third"]))
        assert out.shape == (3, embedder.dimensions)
        assert np.isfinite(out).all()
        assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)

    async def test_empty_batch(self, embedder: Embedder) -> None:
        assert np.asarray(await embedder.embed([])).shape[0] == 0

    async def test_deterministic_and_batch_independent(self, embedder: Embedder) -> None:
        texts = ["the cat sat", "quantum chromodynamics", "the cat sat"]
        batch = np.asarray(await embedder.embed(texts))
        alone = np.asarray(await embedder.embed(["quantum chromodynamics"]))
        assert np.allclose(batch[1], alone[0], atol=1e-4)
        assert np.allclose(batch[0], batch[2], atol=1e-5)
        assert not np.allclose(batch[0], batch[1], atol=1e-2)

    async def test_related_texts_are_closer(self, embedder: Embedder) -> None:
        a, b, c = np.asarray(await embedder.embed(["the cat sat on the mat", "a cat on a mat", "stock market report"]))
        assert float(a @ b) > float(a @ c)
