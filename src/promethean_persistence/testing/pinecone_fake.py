"""A FAKE of Pinecone's data-plane REST API, for tests: Pinecone is a cloud service and its
local emulator is Docker-only, so the official SDK is pointed at this server on 127.0.0.1.

It behaves like Pinecone where our driver depends on it: ``Api-Key`` auth, one dimension per
index, cosine scores, namespaces, metadata limited to strings, numbers, booleans and lists of
strings (no nulls, no nested objects, at most 40 KB per record), at most 1,000 vectors and
2 MB per upsert, ``topK`` up to 10,000, the metadata filter operators, paginated ``list``, and
error bodies ``{"code", "message"}``. Tests can make upserts become visible to queries late
(``visibility_delay``) and make the next requests fail with a status such as 429.

    with FakePinecone(api_key="k") as fake:
        index = AsyncIndex(host=fake.url, api_key="k")
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_UPSERT = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_TOP_K = 10_000

_Stored = tuple[list[float], dict[str, Any], float]  #: a record: values, metadata, visible from (monotonic s)


class _Rejected(Exception):
    def __init__(self, status: int, message: str, code: int = 3) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def _check_metadata(meta: Any) -> None:
    if not isinstance(meta, dict):
        raise _Rejected(400, "Metadata must be a JSON object")
    for key, value in meta.items():
        ok = (
            isinstance(value, (str, bool))
            or (isinstance(value, (int, float)) and math.isfinite(value))
            or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        )
        if not ok:
            raise _Rejected(
                400,
                f"Metadata value for field '{key}' must be a string, number, boolean or list "
                f"of strings, got {type(value).__name__}",
            )
    size = len(json.dumps(meta, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise _Rejected(
            400, f"Metadata size is {size} bytes, which exceeds the limit of {MAX_METADATA_BYTES} bytes per vector"
        )


def _matches(flt: dict[str, Any], meta: dict[str, Any]) -> bool:
    """Pinecone's filter semantics (list values match by their elements)."""
    for key, cond in flt.items():
        if key == "$and":
            if not all(_matches(f, meta) for f in cond):
                return False
            continue
        if key == "$or":
            if not any(_matches(f, meta) for f in cond):
                return False
            continue
        ops = cond if isinstance(cond, dict) else {"$eq": cond}
        present = key in meta
        value = meta.get(key)
        values = value if isinstance(value, list) else [value]
        for op, arg in ops.items():
            if op == "$exists":
                ok = present is bool(arg)
            elif op == "$eq":
                ok = present and any(_same(v, arg) for v in values)
            elif op == "$ne":
                ok = not present or not any(_same(v, arg) for v in values)
            elif op == "$in":
                ok = present and any(_same(v, a) for v in values for a in arg)
            elif op == "$nin":
                ok = not present or not any(_same(v, a) for v in values for a in arg)
            elif op in ("$gt", "$gte", "$lt", "$lte"):
                if not isinstance(arg, (int, float)) or isinstance(arg, bool):
                    raise _Rejected(400, f"{op} operator requires a number")
                ok = present and any(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and _cmp(op, v, arg) for v in values
                )
            else:
                raise _Rejected(400, f"Unknown filter operator {op}")
            if not ok:
                return False
    return True


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _cmp(op: str, a: float, b: float) -> bool:
    return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]


class FakePinecone:
    """The fake data plane of one index, served on 127.0.0.1 (a thread)."""

    def __init__(
        self, api_key: str = "test-key", *, dimension: int | None = None, visibility_delay: float = 0.0
    ) -> None:
        """``api_key`` is the key requests must carry; ``dimension`` the index's vector size (None:
        taken from the first upsert); ``visibility_delay`` the seconds before a write is seen by
        reads (Pinecone is eventually consistent).
        """
        self.api_key = api_key
        self.dimension = dimension
        self.visibility_delay = visibility_delay
        self.namespaces: dict[str, dict[str, _Stored]] = {}
        self.requests: list[str] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The fake index's base URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakePinecone:
        """Start serving in a thread; returns the fake."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakePinecone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, count: int, status: int = 429) -> None:
        """The next ``count`` requests answer ``status`` (429: rate limited)."""
        with self._lock:
            self._failures += [status] * count

    # -- the API ----------------------------------------------------------------------------

    def _ns(self, name: str | None) -> dict[str, _Stored]:
        return self.namespaces.setdefault(name or "", {})

    def _vector(self, v: Any) -> tuple[str, list[float], dict[str, Any]]:
        if not isinstance(v, dict) or not isinstance(v.get("id"), str) or not v["id"]:
            raise _Rejected(400, "Each vector needs a non-empty string id")
        if len(v["id"].encode()) > 512:
            raise _Rejected(400, "Vector id must be at most 512 bytes")
        values = v.get("values")
        if not isinstance(values, list) or not values:
            raise _Rejected(400, f"Vector {v['id']} has no values")
        if self.dimension is None:
            self.dimension = len(values)
        if len(values) != self.dimension:
            raise _Rejected(
                400, f"Vector dimension {len(values)} does not match the dimension of the index {self.dimension}"
            )
        meta = v.get("metadata") or {}
        _check_metadata(meta)
        return v["id"], [float(x) for x in values], meta

    def upsert(self, body: dict[str, Any]) -> dict[str, Any]:
        """Pinecone's upsert request: ``body`` is its JSON body; returns the JSON answer."""
        vectors = body.get("vectors") or []
        if len(vectors) > MAX_UPSERT:
            raise _Rejected(400, f"Upsert batch of {len(vectors)} vectors exceeds the limit of {MAX_UPSERT}")
        parsed = [self._vector(v) for v in vectors]  # all or nothing
        visible = time.monotonic() + self.visibility_delay
        ns = self._ns(body.get("namespace"))
        for id_, values, meta in parsed:
            ns[id_] = (values, meta, visible)
        return {"upsertedCount": len(parsed)}

    def query(self, body: dict[str, Any]) -> dict[str, Any]:
        """Pinecone's query request: ``body`` is its JSON body; returns the JSON answer."""
        top_k = body.get("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise _Rejected(400, f"topK must be between 1 and {MAX_TOP_K}")
        vector = body.get("vector")
        if not isinstance(vector, list) or (self.dimension and len(vector) != self.dimension):
            raise _Rejected(
                400,
                f"Query vector dimension {len(vector or [])} does not match the dimension of the "
                f"index {self.dimension}",
            )
        flt = body.get("filter") or {}
        q = _unit(vector)
        now = time.monotonic()
        scored = []
        for id_, (values, meta, visible) in self._ns(body.get("namespace")).items():
            if visible > now or not _matches(flt, meta):
                continue
            scored.append((sum(a * b for a, b in zip(q, _unit(values))), id_, values, meta))
        scored.sort(key=lambda s: -s[0])
        matches = []
        for score, id_, values, meta in scored[:top_k]:
            match: dict[str, Any] = {"id": id_, "score": score, "values": values if body.get("includeValues") else []}
            if body.get("includeMetadata"):
                match["metadata"] = meta
            matches.append(match)
        return {"matches": matches, "namespace": body.get("namespace") or "", "usage": {"readUnits": 1}}

    def fetch(self, params: dict[str, list[str]]) -> dict[str, Any]:
        """Pinecone's fetch request: ``params`` is its query string; returns the JSON answer."""
        ns = self._ns((params.get("namespace") or [""])[0])
        ids = params.get("ids") or []
        return {
            "vectors": {i: {"id": i, "values": ns[i][0], "metadata": ns[i][1]} for i in ids if i in ns},
            "namespace": (params.get("namespace") or [""])[0],
            "usage": {"readUnits": 1},
        }

    def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Pinecone's delete request: ``body`` is its JSON body; returns the JSON answer."""
        ns = self._ns(body.get("namespace"))
        if body.get("deleteAll"):
            ns.clear()
        for i in body.get("ids") or []:
            ns.pop(i, None)
        return {}

    def update(self, body: dict[str, Any]) -> dict[str, Any]:
        """Pinecone's update request: ``body`` is its JSON body; returns the JSON answer."""
        ns = self._ns(body.get("namespace"))
        id_ = body.get("id")
        if id_ not in ns:
            return {}
        values, meta, visible = ns[id_]
        if "setMetadata" in body:
            merged = {**meta, **body["setMetadata"]}
            _check_metadata(merged)
            meta = merged
        if body.get("values"):
            _, values, _ = self._vector({"id": id_, "values": body["values"]})
        ns[id_] = (values, meta, visible)
        return {}

    def list(self, params: dict[str, list[str]]) -> dict[str, Any]:
        """Pinecone's list request: ``params`` is its query string; returns the JSON answer."""
        ns_name = (params.get("namespace") or [""])[0]
        limit = int((params.get("limit") or ["100"])[0])
        after = (params.get("paginationToken") or [""])[0]
        ids = sorted(i for i in self._ns(ns_name) if i > after)
        page = ids[:limit]
        out: dict[str, Any] = {"vectors": [{"id": i} for i in page], "namespace": ns_name, "usage": {"readUnits": 1}}
        if len(ids) > limit:
            out["pagination"] = {"next": page[-1]}
        return out

    def stats(self, body: dict[str, Any]) -> dict[str, Any]:
        """Pinecone's describe_index_stats request: ``body`` is its JSON body; returns the JSON answer."""
        counts = {name: {"vectorCount": len(ns)} for name, ns in self.namespaces.items() if ns}
        return {
            "namespaces": counts,
            "dimension": self.dimension or 0,
            "indexFullness": 0.0,
            "totalVectorCount": sum(c["vectorCount"] for c in counts.values()),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                fake.requests.append(f"{method} {parts.path}")
                try:
                    with fake._lock:
                        if fake._failures:
                            status = fake._failures.pop(0)
                            raise _Rejected(
                                status,
                                "Too many requests" if status == 429 else "Server error",
                                code=8 if status == 429 else 13,
                            )
                    if self.headers.get("Api-Key") != fake.api_key:
                        raise _Rejected(401, "Invalid API Key", code=16)
                    if len(raw) > MAX_REQUEST_BYTES:
                        raise _Rejected(413, f"Request size {len(raw)} exceeds the limit of {MAX_REQUEST_BYTES} bytes")
                    body = json.loads(raw) if raw else {}
                    params = parse_qs(parts.query)
                    routes = {
                        ("POST", "/vectors/upsert"): lambda: fake.upsert(body),
                        ("POST", "/query"): lambda: fake.query(body),
                        ("GET", "/vectors/fetch"): lambda: fake.fetch(params),
                        ("POST", "/vectors/delete"): lambda: fake.delete(body),
                        ("POST", "/vectors/update"): lambda: fake.update(body),
                        ("GET", "/vectors/list"): lambda: fake.list(params),
                        ("POST", "/describe_index_stats"): lambda: fake.stats(body),
                    }
                    route = routes.get((method, parts.path))
                    if route is None:
                        raise _Rejected(404, f"Not found: {method} {parts.path}", code=5)
                    with fake._lock:
                        result = route()
                    self._reply(200, result)
                except _Rejected as exc:
                    self._reply(exc.status, {"code": exc.code, "message": str(exc), "details": []})
                except ValueError as exc:
                    self._reply(400, {"code": 3, "message": f"Malformed request: {exc}", "details": []})

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

        return Handler


def _unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]
