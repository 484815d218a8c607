"""Fault injection around real drivers: make a vector store or an embedder fail, hang, or
fail every k-th call, and count the calls that reach it. For tests."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from typing import Any

from .._errors import BackendUnavailable
from ..drivers.base import Capabilities


class _Faults:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._mode: str | None = None
        self._every = 0
        self._seen = 0
        self._exc: BaseException | None = None
        self.healed = asyncio.Event()

    def fail(self, exc: BaseException | None = None) -> None:
        """Every call raises ``exc`` (default BackendUnavailable) until ``heal()``."""
        self._mode, self._exc = "fail", exc
        self.healed.clear()

    def hang(self) -> None:
        """Every call blocks until ``heal()`` (then proceeds)."""
        self._mode = "hang"
        self.healed.clear()

    def fail_every(self, k: int, exc: BaseException | None = None) -> None:
        """Every ``k``-th call raises ``exc`` (default BackendUnavailable)."""
        self._mode, self._every, self._seen, self._exc = "every", k, 0, exc

    def heal(self) -> None:
        """End the injected failures and release the calls that hang."""
        self._mode = None
        self.healed.set()

    async def gate(self, method: str) -> None:
        """Count a call of ``method`` and apply the current fault: raise, hang until ``heal()``, or
        let it through.
        """
        self.calls[method] += 1
        if self._mode == "fail":
            raise self._exc or BackendUnavailable(f"injected failure in {method}", driver="faulty")
        if self._mode == "hang":
            await self.healed.wait()
        if self._mode == "every":
            self._seen += 1
            if self._seen % self._every == 0:
                raise self._exc or BackendUnavailable(f"injected failure in {method}", driver="faulty")


class FaultyVector(_Faults):
    """Wraps a real VectorDriver; data calls pass through ``gate`` first."""

    _GATED = ("query", "existing", "fingerprints", "delete", "count", "upsert_in", "delete_in")

    def __init__(self, inner: Any) -> None:
        """``inner`` is the vector driver to wrap."""
        super().__init__()
        self.inner = inner
        self.name = f"faulty-{inner.name}"
        # it stands for a backend that can hang: never in-process, whatever it wraps
        self.capabilities = replace(inner.capabilities, in_process=False)
        self.upserted: Counter[str] = Counter()  #: successful upserts with a vector, per id

    async def upsert(self, ids: Any, vectors: Any, metadata: Any, **kwargs: Any) -> None:
        """See ``VectorDriver.upsert``."""
        await self.gate("upsert")
        await self.inner.upsert(ids, vectors, metadata, **kwargs)
        if vectors is not None:
            self.upserted.update(ids)

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self.inner, attr)
        if attr not in self._GATED:
            return target

        async def gated(*args: Any, **kwargs: Any) -> Any:
            await self.gate(attr)
            return await target(*args, **kwargs)

        return gated


class FaultyEmbedder(_Faults):
    """Wraps a real Embedder; ``embed`` passes through ``gate`` first."""

    def __init__(self, inner: Any) -> None:
        """``inner`` is the embedder to wrap."""
        super().__init__()
        self.inner = inner
        self.name = f"faulty-{inner.name}"
        self.model = inner.model
        self.dimensions = inner.dimensions
        self.supports_images = inner.supports_images
        self.normalize = inner.normalize
        self.capabilities = Capabilities()  # only embed passes through

    async def embed(self, texts: Any) -> Any:
        """See ``Embedder.embed``."""
        await self.gate("embed")
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        """See ``Embedder.aclose``."""
        await self.inner.aclose()
