"""Store names stay in their store: hostile names never reach outside the configured root on
the file-backed drivers, names a backend cannot hold are encoded (or refused at create),
and names that differ only in case are separate stores on every driver."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from promethean_persistence import SemanticStore, StoreConfig
from promethean_persistence._errors import ConfigurationError, SemanticStoreError, ValidationError
from promethean_persistence.drivers import _names

from conftest import CHROMA, MONGO, PG, PINECONE, QDRANT, base_config, require_extra

# valid store names (non-empty str without NUL) that a hostile caller might choose
HOSTILE = [
    "../x",
    "../../etc",
    "../../../../../../../../../../tmp/escaped",
    "/abs",
    "a/b",
    "..",
    ".",
    "~",
    "~/x",
    "Ünïcødé 名前 😀",
    "y" * 180,
    "x" * 300,
    "back\\slash",
    "..\\..\\windows",
    "CON",
    "nul.txt",
    'q"uote',
    "a:b*?<>|",
    " spaced ",
    "a..b",
    ".hidden",
    "-dash",
    "sqlite_master",
]


def _tree(top: Path, skip: Path) -> set[str]:
    """Every path under ``top`` except those under ``skip``."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        if here == skip or skip in here.parents:
            dirnames[:] = []
            continue
        out.update(str(here / n) for n in dirnames + filenames)
    return out


def _file_backed(vector: str, root: Path) -> dict:
    cfg: dict = {
        "primary_driver": "sqlite",
        "vector_driver": "local" if vector == "local-hnsw" else vector,
        "embedding_driver": "hashing",
        "home": str(root),
        "vector_retry_delay_ms": 10,
    }
    if vector == "local-hnsw":  # every vector in the graph: index files are written
        cfg["local"] = {"exact_threshold": 0}
    elif vector in ("qdrant", "qdrant-edge"):
        require_extra("qdrant_client" if vector == "qdrant" else "qdrant_edge")
        if vector == "qdrant":
            cfg["qdrant"] = {"path": str(root / "qdrant")}  # the client's local mode, on disk
    elif vector == "chromadb":
        require_extra("chromadb")
        cfg["chromadb"] = {"path": str(root / "chroma")}
    return cfg


FILE_BACKED = [
    "local",
    "local-hnsw",
    pytest.param("qdrant-edge", marks=QDRANT),
    pytest.param("qdrant", marks=QDRANT),
    pytest.param("chromadb", marks=CHROMA),
]


@pytest.mark.parametrize("vector", FILE_BACKED)
async def test_hostile_names_stay_under_the_configured_root(tmp_path, vector):
    root = tmp_path / "a" / "b" / "c" / "root"
    root.mkdir(parents=True)
    (root.parent / "existing").mkdir()  # a folder a "../" name could write into
    before = _tree(tmp_path, root)
    cfg = _file_backed(vector, root)
    agents = ["duck", "../../../..", str(tmp_path / "abs-agent")]
    opened: dict[tuple[str, str], str] = {}
    for agent in agents:
        for name in [*HOSTILE, str(tmp_path / "abs-name")]:
            try:
                store = await SemanticStore.create(name, config={**cfg, "agent_name": agent})
            except SemanticStoreError as exc:  # a clear error at create, nothing else
                assert isinstance(exc, (ValidationError, ConfigurationError)), (name, exc)
                assert "x" * 300 in name or len(agent) > 20, (agent, name, exc)
                continue
            try:
                id_ = await store.insert({"text": f"note of {name!r}", "metadata": {"n": name}})
                await store.flush()
                entry = await store.get(id_)
                assert entry["metadata"]["vectorStatus"] == "synced", (agent, name, entry["metadata"])
                hits = await store.get_most_relevant(f"note of {name!r}", 3)
                assert [h["id"] for h in hits] == [id_], (agent, name)
            finally:
                await store.cleanup()
            opened[(agent, name)] = id_
    assert len(opened) >= len(agents) * len(HOSTILE) - 3
    assert _tree(tmp_path, root) == before  # nothing created, moved or removed outside root
    assert not Path("/abs").exists() and not Path("/tmp/escaped").exists()
    # each name is its own store, still there after all the others were written
    for (agent, name), id_ in list(opened.items())[:: max(1, len(opened) // 12)]:
        store = await SemanticStore.create(name, config={**cfg, "agent_name": agent})
        try:
            assert await store.count() == 1 and (await store.get(id_))["metadata"]["n"] == name
            assert [h["id"] for h in await store.get_most_relevant(f"note of {name!r}", 3)] == [id_]
        finally:
            await store.cleanup()


@pytest.mark.qdrant
async def test_qdrant_edge_drop_of_a_hostile_name_removes_only_its_own_shard(tmp_path):
    require_extra("qdrant_edge")
    root = tmp_path / "home"
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "file").write_text("precious")
    cfg = _file_backed("qdrant-edge", root)
    store = await SemanticStore.create("../../../keep", config=cfg)
    try:
        await store.insert({"text": "hello"})
        await store.flush()
        await store.drop()
    finally:
        await store.cleanup()
    assert (tmp_path / "keep" / "file").read_text() == "precious"


# -- names a backend cannot hold --------------------------------------------------------------


@pytest.mark.qdrant
async def test_names_qdrant_cannot_hold_are_encoded_or_refused(tmp_path):
    require_extra("qdrant_client")
    from promethean_persistence.drivers.vector.qdrant import QdrantVector

    cfg = StoreConfig(**_file_backed("qdrant", tmp_path))
    for name in ("duck_a/b", 'duck_q"uote', "duck_" + "z" * 300):
        v = QdrantVector.from_config(cfg, name)
        assert _names.qdrant_ok(v._name) and v._name != name
    server = QdrantVector("duck_Notes", url="http://127.0.0.1:1")
    assert server._name == "duck_Notes"  # a server holds it as it is (no file system)
    with pytest.raises(ConfigurationError, match="Qdrant takes 1-255 characters"):
        QdrantVector.from_config(StoreConfig(qdrant={"path": ":memory:", "collection": "a/b"}), "duck_x")


@pytest.mark.pinecone
def test_pinecone_namespaces_it_cannot_hold_are_encoded_and_pinned_ones_refused():
    from promethean_persistence.drivers.vector.pinecone import PineconeVector, namespace_ok

    assert PineconeVector("duck_a/b", api_key="k", host="h").namespace == "duck_a/b"
    for name in ("duck_名前", "duck_tab\there", "x" * 600, "__default__"):
        ns = PineconeVector(name, api_key="k", host="h").namespace
        assert ns != name and namespace_ok(ns)
    with pytest.raises(ConfigurationError, match="printable ASCII"):
        PineconeVector("duck_x", api_key="k", host="h", namespace="名前")


def test_mongodb_refuses_names_it_cannot_hold_at_create():
    require_extra("pymongo")
    from promethean_persistence.drivers.primary.mongodb import MongoPrimary

    for name, rule in (("a$b", r"'\$'"), ("x" * 300, "255 bytes"), ("system.x", "system")):
        with pytest.raises(ValidationError, match=rule):
            MongoPrimary.from_config(StoreConfig(), name)
    with pytest.raises(ValidationError, match="bookkeeping"):
        MongoPrimary.from_config(StoreConfig(), "collection_aliases")


def test_chroma_names_are_always_ones_chroma_takes():
    from promethean_persistence.drivers.vector._chroma_layout import chroma_name

    chroma_rule = r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$"
    for name in [*HOSTILE, "duck_a..b/c", "1.2.3.4", "duck_Notes", "duck_notes"]:
        got = chroma_name(name)
        assert re.match(chroma_rule, got) and ".." not in got and not re.match(r"^[0-9.]+$", got), (name, got)
    assert chroma_name("duck_notes") == "duck_notes" and chroma_name("duck_Notes") == "duck_Notes"


async def test_store_names_with_nul_or_unpaired_surrogates_are_refused():
    for bad in ("a\x00b", "\ud800x"):
        with pytest.raises(ValidationError, match="NUL or an unpaired surrogate"):
            await SemanticStore.create(bad, config={"primary_driver": "memory", "vector_driver": "memory"})
    with pytest.raises(ConfigurationError, match="agent_name"):
        StoreConfig(agent_name="\udc80")


def test_file_names_are_safe_distinct_and_stable():
    names = [f"duck_{n}" for n in HOSTILE] + ["duck_Notes", "duck_notes", "duck_NOTES", "duck_a_b", "duck_a:b", "CON"]
    seen: dict[str, str] = {}
    for name in names:
        got = _names.file_name(name)
        assert got == _names.file_name(name)  # stable
        assert got == got.lower() and len(got) <= 120 and got not in (".", "..")
        assert not set(got) & set('/\\:*?"<>|.\x00') and got not in ("con", "nul")
        assert got.lower() not in seen, (name, seen.get(got.lower()))  # distinct even ignoring case
        seen[got.lower()] = name
    assert _names.file_name("duck_notes") == "duck_notes"  # safe names keep their name (compat)


# -- names that differ only in case ------------------------------------------------------------

CASE_PAIRS = [
    pytest.param(("memory", "memory"), id="memory"),
    pytest.param(("sqlite", "memory"), id="sqlite"),
    pytest.param(("postgresql", "memory"), id="postgresql", marks=PG),
    pytest.param(("mongodb", "memory"), id="mongodb", marks=MONGO),
    pytest.param(("sqlite", "local"), id="local"),
    pytest.param(("sqlite", "local-hnsw"), id="local-hnsw"),
    pytest.param(("sqlite", "pgvector"), id="pgvector", marks=PG),
    pytest.param(("sqlite", "chromadb"), id="chromadb", marks=CHROMA),
    pytest.param(("sqlite", "chromadb-embedded"), id="chromadb-embedded", marks=CHROMA),
    pytest.param(("sqlite", "qdrant"), id="qdrant-memory", marks=QDRANT),
    pytest.param(("sqlite", "qdrant-path"), id="qdrant-path", marks=QDRANT),
    pytest.param(("sqlite", "qdrant-edge"), id="qdrant-edge", marks=QDRANT),
    pytest.param(("sqlite", "pinecone"), id="pinecone", marks=PINECONE),
]
CASE_NAMES = ["Notes", "notes", "NOTES", "a/b", "a_b", "a:b"]


@pytest.mark.parametrize("pair", CASE_PAIRS)
async def test_names_differing_only_in_case_are_separate_stores(tmp_path, pair):
    primary, vector = pair
    cfg = base_config(tmp_path, primary, "qdrant" if vector == "qdrant-path" else vector)
    if vector == "qdrant-path":  # the client's local mode on disk: one client per directory at a time
        cfg["qdrant"] = {"path": str(tmp_path / "qdrant")}
        for name in CASE_NAMES:
            async with await SemanticStore.create(name, config=cfg) as store:
                await store.insert({"id": f"id-{name}", "text": f"the note of {name}"})
                await store.flush()
    else:
        stores = {name: await SemanticStore.create(name, config=cfg) for name in CASE_NAMES}
        try:
            for name, store in stores.items():
                await store.insert({"id": f"id-{name}", "text": f"the note of {name}"})
            for store in stores.values():
                await store.flush()
            for name, store in stores.items():
                assert await store.count() == 1, name
                hits = await store.get_most_relevant(f"the note of {name}", 10)
                assert [h["id"] for h in hits] == [f"id-{name}"], name
                assert (await store.get(f"id-{name}"))["metadata"]["vectorStatus"] == "synced"
            await stores["notes"].delete("id-notes")
            assert await stores["Notes"].get("id-Notes") is not None
        finally:
            for store in stores.values():
                await store.cleanup()
    if primary == "memory":
        return  # nothing outlives the process
    for name in CASE_NAMES:  # the same mapping when opened again
        async with await SemanticStore.create(name, config=cfg) as store:
            gone = name == "notes" and vector != "qdrant-path"
            assert await store.count() == (0 if gone else 1), name
            if not gone and vector not in ("memory", "qdrant"):  # these vectors live in the process
                hits = await store.get_most_relevant(f"the note of {name}", 10)
                assert [h["id"] for h in hits] == [f"id-{name}"], name


@pytest.mark.parametrize(
    "pair",
    [pytest.param(("postgresql", "memory"), id="postgresql"), pytest.param(("sqlite", "pgvector"), id="pgvector")],
)
@pytest.mark.parametrize("suffix", ["__tombstones", "__vectors", "__vectors_hnsw"])
@PG
async def test_postgres_refuses_names_that_would_share_another_stores_table(tmp_path, pair, suffix):
    cfg = base_config(tmp_path, *pair)
    async with await SemanticStore.create("x", config=cfg) as store:
        await store.insert({"id": "a", "text": "store x's entry"})
        with pytest.raises(ValidationError, match=suffix) as refused:
            await SemanticStore.create("x" + suffix, config=cfg)
        assert refused.value.field == "name"
        assert await store.count() == 1 and (await store.get("a"))["metadata"]["vectorStatus"] == "synced"
        await store.drop()


# -- compatibility: existing stores keep their table, file and collection names ----------------


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_sqlite_keeps_the_first_name_and_moves_a_case_twin(tmp_path):
    cfg = {"primary_driver": "sqlite", "vector_driver": "local", "embedding_driver": "hashing", "home": str(tmp_path)}
    for name in ("Notes", "notes", "x", "x__tombstones", "x__vectors"):
        async with await SemanticStore.create(name, config=cfg) as store:
            await store.insert({"text": name})
            await store.flush()
    tables = _tables(tmp_path / "store.db")
    digest = _names.digest
    assert {"duck_Notes", "duck_Notes__vectors", "duck_x", "duck_x__tombstones", "duck_x__vectors"} <= tables
    assert {f"duck_notes~{digest('duck_notes')}", f"duck_notes~{digest('duck_notes')}__vectors"} <= tables
    assert f"duck_x__tombstones~{digest('duck_x__tombstones')}" in tables
    assert f"duck_x__vectors~{digest('duck_x__vectors')}" in tables
    for name in ("Notes", "notes", "x", "x__tombstones", "x__vectors"):
        async with await SemanticStore.create(name, config=cfg) as store:
            assert [e["text"] for e in await store.get_most_recent(5)] == [name]
            assert [h["text"] for h in await store.get_most_relevant(name, 5)] == [name]


@pytest.mark.qdrant
async def test_qdrant_edge_and_path_mode_open_what_earlier_versions_made(tmp_path):
    require_extra("qdrant_client", "qdrant_edge")
    from qdrant_client import AsyncQdrantClient, models

    from promethean_persistence.drivers.vector.qdrant import QdrantVector, point_id
    from promethean_persistence.drivers.vector.qdrant_edge import QdrantEdgeVector

    vec = np.ones(8, dtype=np.float32) / np.sqrt(8)
    # qdrant-edge: a shard directory named by the raw collection name, as earlier versions did
    old = QdrantEdgeVector("duck_Notes é", str(tmp_path / "edge"))
    old.path = old.root / "duck_Notes é"
    await old.open()
    await old.upsert(["kept"], [vec], [{}])
    await old.aclose()
    again = QdrantEdgeVector.from_config(StoreConfig(qdrant={"path": str(tmp_path / "edge")}), "duck_Notes é")
    await again.open()
    try:
        assert again.path.name == "duck_Notes é" and await again.existing(["kept"]) == {"kept"}
    finally:
        await again.aclose()
    # qdrant path mode: a collection named by the raw name
    client = AsyncQdrantClient(path=str(tmp_path / "q"))
    await client.create_collection("duck_Notes", vectors_config=models.VectorParams(size=8, distance="Cosine"))
    await client.upsert("duck_Notes", [models.PointStruct(id=point_id("kept"), vector=vec.tolist(), payload={})])
    await client.close()
    v = QdrantVector.from_config(StoreConfig(qdrant={"path": str(tmp_path / "q")}), "duck_Notes")
    await v.open()
    try:
        assert v._name == "duck_Notes" and await v.count() == 1
    finally:
        await v.aclose()
