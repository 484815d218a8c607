"""Image entries (SPEC §4): embedded as images by an image-capable model, skipped otherwise.

The image-capable model is a tiny CLIP with random weights built by the test
(testing/tiny_clip.py): no trained one installs from the registries here. It runs the real
sentence-transformers CLIP code path; its vectors carry no meaning, so nothing here asserts
relevance between texts and images."""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from promethean_persistence import EmbeddingError, SemanticStore

from conftest import PG, base_config, require_extra


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    require_extra("sentence_transformers", "torch", "PIL")
    from promethean_persistence.testing.tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture
def pictures(tmp_path):
    from PIL import Image

    paths = {}
    for name, colour in {"red": (255, 0, 0), "blue": (0, 0, 255), "noise": None}.items():
        image = (
            Image.new("RGB", (48, 40), colour)
            if colour
            else Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 48, 3), dtype=np.uint8))
        )
        paths[name] = str(tmp_path / f"{name}.png")
        image.save(paths[name])
    return paths


@pytest.fixture
def image_url(tmp_path, pictures):
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def clip_config(tmp_path, tiny_clip, primary="sqlite", vector="local", **overrides):
    return base_config(
        tmp_path,
        primary,
        vector,
        embedding_driver="sentence-transformers",
        embedding_function=tiny_clip,
        sentence_transformers={"device": "cpu"},
        **overrides,
    )


async def test_clip_model_embeds_paths_and_urls(tiny_clip, pictures, image_url):
    from promethean_persistence.drivers.embedding.sentence_transformers import SentenceTransformersEmbedder

    embedder = SentenceTransformersEmbedder(tiny_clip, device="cpu")
    assert embedder.supports_images and embedder.dimensions == 16
    out = await embedder.embed_images([pictures["red"], pictures["blue"], image_url + "red.png"])
    assert out.shape == (3, 16) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
    assert np.allclose(out[0], out[2], atol=1e-5)  # the same picture, from disk and over HTTP
    assert not np.allclose(out[0], out[1], atol=1e-3)
    with pytest.raises(EmbeddingError, match="missing.png"):
        await embedder.embed_images([pictures["red"].replace("red", "missing")])
    await embedder.aclose()


async def test_store_embeds_image_entries_as_images(tmp_path, tiny_clip, pictures):
    async with await SemanticStore.create("gallery", config=clip_config(tmp_path, tiny_clip)) as store:
        assert store.supports_images
        ids = await store.insert_many(
            [
                {"text": pictures["red"], "metadata": {"type": "image"}},
                {"text": pictures["noise"], "metadata": {"type": "image"}},
                {"text": "a caption about a red square"},
                {"text": str(tmp_path / "gone.png"), "metadata": {"type": "image"}},
            ]
        )
        statuses = [(await store.get(i))["metadata"]["vectorStatus"] for i in ids]
        # the unreadable picture fails alone; the rest of its batch is written
        assert statuses == ["synced", "synced", "synced", "failed"]
        assert "gone.png" in (await store.get(ids[3]))["metadata"]["vectorWriteError"]
        image_vector = np.asarray(await store.embedder.embed_images([pictures["red"]]))[0]
        [hit] = await store.vector.query(image_vector, 1)
        assert hit.id == ids[0] and hit.score > 0.999  # its vector is the picture's, not its path's
        assert {e["id"] for e in await store.get_most_relevant("red", 10)} == set(ids[:3])


@pytest.mark.parametrize("drivers", [pytest.param(("postgresql", "pgvector"), marks=PG, id="postgresql+pgvector")])
async def test_strict_atomic_writes_embed_image_entries_as_images(tmp_path, tiny_clip, pictures, drivers):
    # record and vector commit together here (``outbox.strict``), embedded before the commit
    config = clip_config(tmp_path, tiny_clip, *drivers, consistency="strict")
    async with await SemanticStore.create("strict_gallery", config=config) as store:
        try:
            red, caption = await store.insert_many(
                [{"text": pictures["red"], "metadata": {"type": "image"}}, {"text": "a caption about a red square"}]
            )
            image_vector = np.asarray(await store.embedder.embed_images([pictures["red"]]))[0]
            [hit] = await store.vector.query(image_vector, 1)
            assert hit.id == red and hit.score > 0.999  # the picture's vector, not its path's
            assert (await store.get(caption))["metadata"]["vectorStatus"] == "synced"
        finally:
            await store.drop()


async def test_image_entries_are_skipped_by_a_text_model(tmp_path, pictures):
    async with await SemanticStore.create("gallery", config=base_config(tmp_path, "sqlite", "local")) as store:
        assert not store.supports_images
        id_ = await store.insert({"text": pictures["red"], "metadata": {"type": "image"}})
        assert (await store.get(id_))["metadata"]["vectorStatus"] == "skipped"
        assert not (await store.check_consistency(id_))["has_vector"]


async def test_supports_images_false_turns_image_embedding_off(tmp_path, tiny_clip, pictures):
    config = clip_config(tmp_path, tiny_clip, supports_images=False)
    async with await SemanticStore.create("gallery", config=config) as store:
        id_ = await store.insert({"text": pictures["red"], "metadata": {"type": "image"}})
        assert (await store.get(id_))["metadata"]["vectorStatus"] == "skipped"
