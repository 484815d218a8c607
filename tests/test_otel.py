"""OpenTelemetry (the ``otel`` extra): spans and metrics of the store's operations, read back
through the SDK's in-memory exporters; never a text, a query or a secret among them; and,
without ``opentelemetry``, nothing wrapped and nothing imported (a subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from urllib.parse import urlsplit, urlunsplit

import pytest

from conftest import PG, base_config, require_extra

require_extra("opentelemetry")  # the otel extra
require_extra("opentelemetry.sdk")  # the test extra: the in-memory exporters

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from promethean_persistence import SemanticStore, ValidationError, _telemetry, migrate  # noqa: E402
from promethean_persistence.outbox.vectors import embed_records, upsert_records  # noqa: E402
from promethean_persistence.testing.embedding_server import EmbeddingServer, hashing_encoder  # noqa: E402

TEXTS = ["the otter swims in the cold river", "a ledger of quarterly revenue", "bread rises in a warm oven"]
QUERY = "where do otters live"
STORES = [
    pytest.param(("memory", "memory"), id="memory+memory"),
    pytest.param(("sqlite", "local"), id="sqlite+local"),
]
SYSTEM = {
    "memory": "memory",
    "sqlite": "sqlite",
    "local": "local",
    "postgresql": "postgresql",
    "pgvector": "postgresql",
}


class Telemetry:
    """Providers of their own (the globals can be set once per process), read back in memory."""

    def __init__(self) -> None:
        self.spans_out = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name_prefix: str = "") -> list:
        return [s for s in self.spans_out.get_finished_spans() if s.name.startswith(name_prefix)]

    def one(self, name: str):
        found = [s for s in self.spans_out.get_finished_spans() if s.name == name]
        assert len(found) == 1, [s.name for s in self.spans_out.get_finished_spans()]
        return found[0]

    def points(self, metric: str) -> list:
        data = self.reader.get_metrics_data()
        return [
            p
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == metric
            for p in m.data.data_points
        ]

    def recorded(self) -> str:
        """Everything the spans and the metrics carry, as text: names, attributes, events, status."""
        parts = []
        for s in self.spans_out.get_finished_spans():
            parts.append(s.to_json())
        data = self.reader.get_metrics_data()
        parts.append(data.to_json() if data else "")
        return "\n".join(parts)


@pytest.fixture
def telemetry():
    tel = Telemetry()
    _telemetry.configure(tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider)
    yield tel
    _telemetry._instruments = None  # back to the global providers
    tel.tracer_provider.shutdown()
    tel.meter_provider.shutdown()


def test_hooks_are_wrapped_when_opentelemetry_is_installed():
    assert _telemetry.ENABLED
    for fn in (SemanticStore.insert, SemanticStore.insert_many, SemanticStore.get_most_relevant, SemanticStore.flush):
        assert hasattr(fn, "__wrapped__"), fn
    assert hasattr(embed_records, "__wrapped__") and hasattr(upsert_records, "__wrapped__")
    assert hasattr(migrate, "__wrapped__") and hasattr(SemanticStore.repair, "__wrapped__")


@pytest.mark.parametrize("kinds", STORES)
async def test_spans_of_writes_searches_flush_and_repair(tmp_path, telemetry, kinds):
    primary, vector = kinds
    async with await SemanticStore.create("otel", config=base_config(tmp_path, primary, vector)) as store:
        await store.insert({"text": TEXTS[0], "metadata": {"owner": "ada-private"}})
        await store.insert_many([{"text": t} for t in TEXTS[1:]])
        await store.flush()
        [best] = await store.get_most_relevant(QUERY, 1)
        assert best["text"] == TEXTS[0]
        await store.search_by_vector([1.0] + [0.0] * 255, 2)
        await store.repair()
        model, collection = store.embedder.model, store.name
    db = {"db.system.name": SYSTEM[primary], "db.system": SYSTEM[primary], "db.collection.name": collection}

    insert, insert_many = telemetry.one(f"insert {collection}"), telemetry.spans(f"insert_many {collection}")
    assert insert.kind == SpanKind.CLIENT and insert.status.status_code == StatusCode.UNSET
    assert dict(insert.attributes) == {**db, "db.operation.name": "insert"}
    assert len(insert_many) == 2  # insert runs insert_many
    by_parent = {s.parent.span_id if s.parent else None: s for s in insert_many}
    assert insert.context.span_id in by_parent  # the single insert's batch of one is its child
    batch = by_parent[None]
    assert dict(batch.attributes) == {**db, "db.operation.name": "insert_many", "db.operation.batch.size": 2}

    search = telemetry.one(f"search {collection}")
    assert dict(search.attributes) == {**db, "db.operation.name": "search", "db.response.returned_rows": 1}
    by_vector = telemetry.one(f"search_by_vector {collection}")
    assert by_vector.attributes["db.response.returned_rows"] == 2
    for name in ("flush", "repair"):
        assert dict(telemetry.one(f"{name} {collection}").attributes) == {**db, "db.operation.name": name}

    embeds = telemetry.spans("embeddings")
    assert {s.name for s in embeds} == {f"embeddings {model}"}
    for s in embeds:
        assert s.kind == SpanKind.CLIENT
        assert s.attributes["gen_ai.operation.name"] == "embeddings"
        assert s.attributes["gen_ai.request.model"] == model
        assert s.attributes["gen_ai.provider.name"] == "hashing"
        assert s.attributes["gen_ai.embeddings.dimension.count"] == 256
    documents = [s for s in embeds if s.attributes["promethean_persistence.embedding.purpose"] == "document"]
    assert sum(s.attributes["promethean_persistence.embedding.texts"] for s in documents) == len(TEXTS)
    [query] = [s for s in embeds if s.attributes["promethean_persistence.embedding.purpose"] == "query"]
    assert query.parent is not None and query.parent.span_id == search.context.span_id  # inside the search

    upserts = telemetry.spans(f"upsert {collection}")
    assert upserts and all(s.attributes["db.system.name"] == SYSTEM[vector] for s in upserts)
    assert all(s.attributes["db.operation.name"] == "upsert" for s in upserts)
    # a queue batch serves many callers: its span is a root, never one caller's child, and
    # holds the batch's embedding and upserts
    batches = telemetry.spans(f"vector_batch {collection}")
    assert batches and all(s.parent is None for s in batches)
    assert all(s.attributes["db.system.name"] == SYSTEM[vector] for s in batches)
    ids = {s.context.span_id for s in batches}
    assert all(s.parent is not None and s.parent.span_id in ids for s in upserts + documents)

    recorded = telemetry.recorded()
    for private in [*TEXTS, QUERY, "otter", "ada-private"]:
        assert private not in recorded


async def _gauges(telemetry, store) -> dict:
    """The three gauges of ``store``, once the stored outbox's read started by a collection is
    answered (the backlog gauge reports the last read and starts the next)."""
    telemetry.points("promethean_persistence.outbox.backlog")
    watched = _telemetry._stores[store]
    for _ in range(500):
        if not watched.reading:
            break
        await asyncio.sleep(0.01)
    data = telemetry.reader.get_metrics_data()
    found: dict = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    if m.name.endswith(("backlog", "age")) and p.attributes.get("db.collection.name") == store.name:
                        found.setdefault(m.name, {})[p.attributes.get(_telemetry.STATE)] = p.value
    return found


async def test_metrics_histograms_counters_and_backlog(tmp_path, telemetry):
    # a long group-commit wait keeps the writes queued after insert returns (the gauges see them)
    config = base_config(tmp_path, "sqlite", "local", vector_flush_interval_ms=800, vector_timeout_ms=50)
    async with await SemanticStore.create("metrics", config=config) as store:
        await store.insert_many([{"text": t} for t in TEXTS])
        gauges = await _gauges(telemetry, store)
        assert gauges["promethean_persistence.queue.backlog"] == {"pending": len(TEXTS), "failed": 0}
        stored = gauges["promethean_persistence.outbox.backlog"]
        assert stored["pending"] == len(TEXTS) and stored["failed"] == 0 and stored.get("tombstones", 0) == 0
        [age] = gauges["promethean_persistence.outbox.oldest_pending_age"].values()
        assert 0 <= age < 60
        await store.flush()
        await store.get_most_relevant(QUERY, 2)
        await store.get_most_relevant([QUERY, "ovens"], 2)
        gauges = await _gauges(telemetry, store)
        assert gauges["promethean_persistence.queue.backlog"] == {"pending": 0, "failed": 0}
        assert gauges["promethean_persistence.outbox.backlog"]["pending"] == 0
        assert "promethean_persistence.outbox.oldest_pending_age" not in gauges  # nothing pending

    durations = telemetry.points("db.client.operation.duration")
    count = {p.attributes["db.operation.name"]: 0 for p in durations}
    for p in durations:
        assert p.attributes["db.system.name"] in ("sqlite", "local")
        assert "db.operation.batch.size" not in p.attributes  # a count is no metric dimension
        assert p.sum >= 0 and p.min >= 0
        count[p.attributes["db.operation.name"]] += p.count
    assert count["insert_many"] == 1 and count["search"] == 2 and count["flush"] == 1 and count["upsert"] >= 1
    texts = telemetry.points("promethean_persistence.embedding.texts")
    by_purpose = {p.attributes["promethean_persistence.embedding.purpose"]: p.value for p in texts}
    assert by_purpose == {"document": len(TEXTS), "query": 3}
    [embed_duration] = [
        p
        for p in telemetry.points("gen_ai.client.operation.duration")
        if p.attributes["promethean_persistence.embedding.purpose"] == "query"
    ]
    assert embed_duration.count == 2
    assert not telemetry.points("promethean_persistence.failures")
    # a closed store is no longer observed (nor read)
    assert await _gauges(telemetry, store) == {} and not _telemetry._stores[store].reading


async def test_a_failure_records_its_class_never_its_message(tmp_path, telemetry):
    async with await SemanticStore.create("fails", config=base_config(tmp_path, "memory", "memory")) as store:
        with pytest.raises(ValidationError) as caught:
            await store.insert({"text": "private words", "metadata": {"nested": {"bad": float("nan")}}})
        assert "nested" in str(caught.value)  # the message names the field: it must not be recorded
    span = telemetry.one(f"insert {store.name}")
    assert span.status.status_code == StatusCode.ERROR and not span.status.description
    assert span.attributes["error.type"] == "ValidationError"
    assert [(e.name, dict(e.attributes)) for e in span.events] == [("exception", {"exception.type": "ValidationError"})]
    [failure] = [
        p for p in telemetry.points("promethean_persistence.failures") if p.attributes["db.operation.name"] == "insert"
    ]
    assert failure.value == 1 and failure.attributes["error.type"] == "ValidationError"
    failed = [p for p in telemetry.points("db.client.operation.duration") if p.attributes.get("error.type")]
    assert {p.attributes["db.operation.name"] for p in failed} == {"insert", "insert_many"}
    assert "nested" not in telemetry.recorded() and "private words" not in telemetry.recorded()


@pytest.fixture
def openai_server():
    server = EmbeddingServer({"hash-64": hashing_encoder(64)}, api_key="sk-otel-topsecret-9f8e").start()
    yield server
    server.stop()


async def test_an_api_key_and_a_failing_embedder(tmp_path, telemetry, openai_server):
    config = base_config(
        tmp_path,
        "sqlite",
        "local",
        embedding_driver="openai",
        embedding_function="hash-64",
        openai={"base_url": openai_server.url + "/v1", "api_key": "sk-otel-topsecret-9f8e", "max_retries": 0},
    )
    async with await SemanticStore.create("keys", config=config) as store:
        await store.insert_many([{"text": t} for t in TEXTS])
        assert len(await store.get_most_relevant(QUERY, 1)) == 1
        openai_server.faults.append(("status", 500))
        with pytest.raises(Exception) as caught:
            await store.get_most_relevant("this query fails", 1)
    kind = type(caught.value).__name__
    embeds = telemetry.spans("embeddings hash-64")
    assert {s.attributes["gen_ai.provider.name"] for s in embeds} == {"openai"}
    [failed] = [s for s in embeds if s.status.status_code == StatusCode.ERROR]
    assert failed.attributes["error.type"] == kind
    first, second = sorted(telemetry.spans(f"search {store.name}"), key=lambda s: s.start_time)
    assert first.status.status_code == StatusCode.UNSET and "error.type" not in first.attributes
    assert second.status.status_code == StatusCode.ERROR and second.attributes["error.type"] == kind
    assert failed.parent is not None and failed.parent.span_id == second.context.span_id
    failures = {
        p.attributes.get("gen_ai.operation.name"): p.value for p in telemetry.points("promethean_persistence.failures")
    }
    assert failures == {"embeddings": 1, None: 1}  # the embedding, and the search it sank
    recorded = telemetry.recorded()
    assert "topsecret" not in recorded and "this query fails" not in recorded and openai_server.url not in recorded


@PG
async def test_a_dsn_password_is_never_recorded(tmp_path, telemetry, postgres_dsn):
    parts = urlsplit(postgres_dsn)
    user, _, host = parts.netloc.rpartition("@")
    secret = "pw-otel-hunter2"  # the test server trusts local connections: the password goes unused
    dsn = urlunsplit(parts._replace(netloc=f"{user or 'postgres'}:{secret}@{host}"))
    config = {**base_config(tmp_path, "postgresql", "local"), "postgresql": {"dsn": dsn}}
    async with await SemanticStore.create("pg", config=config) as store:
        await store.insert_many([{"text": t} for t in TEXTS])
        await store.get_most_relevant(QUERY, 1)
        await store.drop()
    assert telemetry.one(f"search {store.name}").attributes["db.system.name"] == "postgresql"
    assert telemetry.one(f"insert_many {store.name}").attributes["db.system.name"] == "postgresql"
    recorded = telemetry.recorded()
    assert secret not in recorded and "/tmp" not in recorded and TEXTS[0] not in recorded


def _vector_spans(telemetry, collection: str) -> tuple[list, list]:
    """The document embedding spans and the upsert spans of ``collection``, whatever wrote them."""
    documents = [
        s
        for s in telemetry.spans("embeddings")
        if s.attributes["promethean_persistence.embedding.purpose"] == "document"
    ]
    return documents, telemetry.spans(f"upsert {collection}")


@PG
async def test_a_strict_atomic_insert_traces_its_embedding_and_upsert_as_the_queue_does(tmp_path, telemetry):
    from promethean_persistence.outbox.strict import shares_transactions

    async with await SemanticStore.create("queued", config=base_config(tmp_path, "postgresql", "pgvector")) as store:
        await store.insert_many([{"text": t} for t in TEXTS[:2]])
        await store.flush()
        queued_collection = store.vector.collection
        await store.drop()
    queued_embeds, queued_upserts = _vector_spans(telemetry, queued_collection)
    assert len(queued_embeds) == 1 and len(queued_upserts) == 1
    telemetry.spans_out.clear()

    config = base_config(tmp_path, "postgresql", "pgvector", consistency="strict")
    async with await SemanticStore.create("atomic", config=config) as store:
        assert shares_transactions(store.primary, store.vector)  # the one-transaction path
        await store.insert_many([{"text": t} for t in TEXTS[:2]])
        collection = store.vector.collection
        await store.drop()
    assert not telemetry.spans(f"vector_batch {store.name}")  # written by the insert itself, not the queue
    [embed], [upsert] = _vector_spans(telemetry, collection)
    batch = telemetry.one(f"insert_many {store.name}")
    for span, queued in ((embed, queued_embeds[0]), (upsert, queued_upserts[0])):
        assert span.name == queued.name.replace(queued_collection, collection)
        assert span.kind == SpanKind.CLIENT and span.status.status_code == StatusCode.UNSET
        assert {**span.attributes, "db.collection.name": None} == {**queued.attributes, "db.collection.name": None}
        assert span.parent is not None and span.parent.span_id == batch.context.span_id  # inside the insert
    assert upsert.attributes["db.system.name"] == "postgresql" and upsert.attributes["db.operation.batch.size"] == 2
    assert embed.attributes["promethean_persistence.embedding.texts"] == 2
    assert TEXTS[0] not in telemetry.recorded()


async def test_migrate_span_and_its_vector_copies(tmp_path, telemetry):
    source = await SemanticStore.create("from", config=base_config(tmp_path / "a", "memory", "memory"))
    target = await SemanticStore.create("to", config=base_config(tmp_path / "b", "sqlite", "local"))
    try:
        await source.insert_many([{"text": t} for t in TEXTS])
        report = await migrate(source, target, progress=False)
        assert report["status"] == "ok"
    finally:
        await source.cleanup()
        await target.cleanup()
    span = telemetry.one(f"migrate {target.name}")
    assert dict(span.attributes) == {
        "db.system.name": "sqlite",
        "db.system": "sqlite",
        "db.collection.name": target.name,
        "db.operation.name": "migrate",
    }
    # the copier writes the vectors inside the migration's trace
    assert [s for s in telemetry.spans(f"upsert {target.name}") if s.context.trace_id == span.context.trace_id]
    assert TEXTS[0] not in telemetry.recorded()


async def test_a_call_it_cannot_describe_runs_untraced(telemetry):
    from promethean_persistence._types import Record
    from promethean_persistence.drivers.embedding.hashing import HashingEmbedder

    records = [Record(id="a", text="kept private", timestamp=0)]
    # by keyword: the wrapper cannot find the embedder, so the call runs as it is, untraced
    vectors = await embed_records(embedder=HashingEmbedder(), records=records, images=False)
    assert len(vectors) == 1 and telemetry.spans() == []


ABSENT = textwrap.dedent(
    """
    import asyncio, json, sys
    for name in ("opentelemetry", "opentelemetry.trace", "opentelemetry.metrics"):
        sys.modules[name] = None  # as if the package were not installed
    from promethean_persistence import MissingDependencyError, SemanticStore, _telemetry, migrate
    from promethean_persistence.outbox.queue import VectorWriteQueue
    from promethean_persistence.outbox.vectors import embed_records, upsert_records

    async def main():
        store = await SemanticStore.create(
            "plain", config={"primaryDriver": "memory", "vectorDriver": "memory", "embeddingDriver": "hashing"}
        )
        await store.insert({"text": "hello world"})
        hits = await store.get_most_relevant("hello", 1)
        await store.flush()
        await store.repair()
        await store.cleanup()
        return [h["text"] for h in hits]

    hits = asyncio.run(main())
    try:
        _telemetry.configure()
        refused = ""
    except MissingDependencyError as exc:
        refused = str(exc)
    wrapped = [
        f.__qualname__
        for f in (SemanticStore.insert, SemanticStore.insert_many, SemanticStore.get_most_relevant,
                  SemanticStore.flush, SemanticStore.repair, SemanticStore._embed, VectorWriteQueue._process,
                  embed_records, upsert_records, migrate)
        if hasattr(f, "__wrapped__")
    ]
    loaded = [m for m, v in sys.modules.items() if m.startswith("opentelemetry") and v is not None]
    print(json.dumps({"enabled": _telemetry.ENABLED, "hits": hits, "wrapped": wrapped, "loaded": loaded,
                      "refused": refused}))
    """
)


def _run_python(script: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env={**os.environ}, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_opentelemetry_nothing_is_wrapped_or_imported():
    result = _run_python(ABSENT)
    assert result["enabled"] is False
    assert result["hits"] == ["hello world"]
    assert result["wrapped"] == [] and result["loaded"] == []
    assert "promethean-persistence[otel]" in result["refused"]


def test_opentelemetry_is_imported_at_the_first_traced_call_not_with_the_package():
    result = _run_python(
        "import json, sys; import promethean_persistence, promethean_persistence.cli; "
        "print(json.dumps({'loaded': [m for m in sys.modules if m.startswith('opentelemetry')]}))"
    )
    # the namespace package only (looked up to know whether the API is installed), no API module
    assert [m for m in result["loaded"] if m != "opentelemetry"] == []


GLOBAL = textwrap.dedent(
    """
    import asyncio, json
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from promethean_persistence import SemanticStore, _telemetry

    async def main():
        store = await SemanticStore.create(
            "global", config={"primaryDriver": "memory", "vectorDriver": "memory", "embeddingDriver": "hashing"}
        )
        await store.insert({"text": "before any provider"})
        before = _telemetry._instruments.live
        # the application configures OpenTelemetry as usual, after the store was opened
        spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        await store.insert({"text": "after"})
        await store.get_most_relevant("after", 1)
        names = sorted({s.name for s in spans.get_finished_spans()})
        scopes = sorted({s.instrumentation_scope.name for s in spans.get_finished_spans()})
        data = reader.get_metrics_data()
        measured = sorted({m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics})
        await store.cleanup()
        return {"before": before, "names": names, "scopes": scopes, "metrics": measured}

    print(json.dumps(asyncio.run(main())))
    """
)


def test_unconfigured_api_goes_straight_through_then_follows_the_global_providers():
    result = _run_python(GLOBAL)
    assert result["before"] is False  # no provider yet: no span built, the call went straight through
    assert result["names"] == [
        "embeddings hashing-v1-256",
        "insert duck_global",
        "insert_many duck_global",
        "search duck_global",
        "upsert duck_global",
        "vector_batch duck_global",
    ]
    assert result["scopes"] == ["promethean_persistence"]
    assert {
        "db.client.operation.duration",
        "gen_ai.client.operation.duration",
        "promethean_persistence.embedding.texts",
        "promethean_persistence.queue.backlog",  # the stored outbox's gauge reports from the next collection
    } <= set(result["metrics"])
