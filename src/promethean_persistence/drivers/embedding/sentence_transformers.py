"""Embeddings from a sentence-transformers model, run in a worker thread.

It needs ``pip install 'promethean-persistence[local]'`` (install ``torch`` first to pick its
CPU or CUDA build yourself). The ``local`` driver (``local.py``) runs all-MiniLM-L6-v2
through this class on PyTorch, or on ONNX Runtime.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..._deps import check_installed, require
from ..._errors import EmbeddingError
from .._threaded import ThreadedModel
from ..base import Capabilities

if TYPE_CHECKING:
    from ..._config import StoreConfig

MAX_CHARS = 16_384  # far beyond the model's token window; spares the tokenizer megabytes


class SentenceTransformersEmbedder(ThreadedModel):
    """Any sentence-transformers model by name or path; ``device`` is cpu, cuda or auto."""

    name: ClassVar[str] = "sentence-transformers"
    #: images when the model has an image modality (CLIP): see ``supports_images``
    capabilities: ClassVar[Capabilities] = Capabilities(images=True, warm=True)
    extra: ClassVar[str] = "local"
    _THREAD = "embedder"

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        batch_size: int = 64,
        normalize: bool = True,
        dimensions: int | None = None,
        path: str | None = None,
    ) -> None:
        """``model`` is the model's name (or, with ``path``, its label); ``device`` is ``cpu``,
        ``cuda`` or ``auto``; ``batch_size`` the texts encoded at once; ``normalize`` L2-normalises
        the vectors; ``dimensions`` the vector size when known in advance (else the model tells
        when loaded); ``path`` a local directory to load the model from instead of downloading it.
        The model is loaded on first use, not here.
        """
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self._images: bool | None = None if dimensions is None else False  #: a preset is text-only
        self._path = path or model
        self._dimensions = dimensions
        self._model: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._loading: asyncio.Future[Any] | None = None

    @classmethod
    def from_config(cls, config: StoreConfig) -> SentenceTransformersEmbedder:
        """See ``Embedder.from_config``."""
        st = config.sentence_transformers
        if not config.embedding_function:
            from ..._errors import ConfigurationError

            raise ConfigurationError(
                "The 'sentence-transformers' driver needs a model: set embedding_function "
                "(EMBEDDING_FUNCTION) to a model name or path",
                driver=cls.name,
            )
        cls.check_installed()
        return cls(config.embedding_function, device=st.device, batch_size=st.batch_size, normalize=st.normalize)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, device={self.device!r})"

    @classmethod
    def check_installed(cls) -> None:
        """Fail at open, not at the first insert, when the extra is missing."""
        check_installed("sentence_transformers", "torch", extra=cls.extra, driver=cls.name)

    @property
    def supports_images(self) -> bool:
        """True for models that take images (CLIP and the like); loads the model to tell."""
        if self._images is None:
            self._load()
        return bool(self._images)

    @property
    def dimensions(self) -> int:
        """The vector size: the one given, else the loaded model's (loading it now if needed)."""
        if self._dimensions is None:
            self._load()  # the model tells; only models without a preset pay this at open
        assert self._dimensions is not None  # _load set it
        return self._dimensions

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        st, device = sentence_transformers_on(self.device, extra=self.extra, driver=self.name)
        try:
            model = st.SentenceTransformer(self._path, device=device)
        except Exception as exc:
            raise EmbeddingError(f"Cannot load embedding model {self.model!r}: {exc}", driver=self.name) from exc
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dims = int(get_dim())
        if self._dimensions is not None and dims != self._dimensions:
            raise EmbeddingError(
                f"Model {self.model!r} produces {dims}-dimensional vectors, expected {self._dimensions}",
                driver=self.name,
            )
        self._dimensions, self._model, self.device = dims, model, device
        modalities = getattr(model, "modalities", None)
        if self._images is None:
            self._images = "image" in modalities if modalities is not None else type(model[0]).__name__ == "CLIPModel"
        return model

    async def warm(self) -> None:
        """Load the model (seconds, once); the write queue waits for this outside its timeout."""
        await self._ready()

    async def _ready(self) -> Any:
        if self._model is not None:
            return self._model
        return await self._load_in_thread(self._load)

    def _encode(self, inputs: list[Any]) -> np.ndarray:
        out = self._model.encode(
            [t[:MAX_CHARS] if isinstance(t, str) else t for t in inputs],
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """See ``Embedder.embed``."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        await self._ready()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._encode, texts)
        except Exception as exc:
            raise EmbeddingError(f"{self.model!r} failed to embed {len(texts)} texts: {exc}", driver=self.name) from exc

    async def embed_images(self, sources: Sequence[str]) -> np.ndarray:
        """Embed images given as file paths or http(s) URLs (models with ``supports_images``).

        See ``ImageEmbedder.embed_images``.
        """
        sources = list(sources)
        if not sources:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        await self._ready()
        if not self.supports_images:
            raise EmbeddingError(f"{self.model!r} does not embed images", driver=self.name, operation="embed_images")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: self._encode([_open_image(s) for s in sources])
            )
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(
                f"{self.model!r} failed to embed {len(sources)} images: {exc}",
                driver=self.name,
                operation="embed_images",
            ) from exc

    async def aclose(self) -> None:
        """See ``Embedder.aclose``."""
        self._stop_thread()
        self._model = None


def sentence_transformers_on(device: str, *, extra: str, driver: str) -> tuple[Any, str]:
    """The ``sentence_transformers`` module, quiet, and the torch device ``device`` names
    (``"auto"``: cuda when available, else cpu) for the driver ``driver``. Raises
    ``MissingDependencyError`` naming the ``extra`` when a package is absent."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    st = require("sentence_transformers", extra=extra, driver=driver)
    torch = require("torch", extra=extra, driver=driver)
    return st, ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def _open_image(source: str) -> Any:
    """A PIL image from a path or an http(s) URL, or EmbeddingError naming the source."""
    import io

    image_module = require("PIL.Image", extra="local", driver="sentence-transformers")
    try:
        if source.startswith(("http://", "https://")):
            import httpx

            response = httpx.get(source, timeout=30.0, follow_redirects=True)
            response.raise_for_status()
            data: Any = io.BytesIO(response.content)
        else:
            data = os.path.expanduser(source.removeprefix("file://"))
        with image_module.open(data) as image:
            return image.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - unreadable, missing, not an image
        raise EmbeddingError(
            f"cannot read image {source[:200]!r}: {exc}", driver="sentence-transformers", operation="embed_images"
        ) from exc
