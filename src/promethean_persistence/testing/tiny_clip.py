"""A tiny CLIP model with random weights, saved as a sentence-transformers model: the real
image-and-text code path (CLIP architecture, processor, sentence-transformers' CLIP module)
without a download. No image-capable model with trained weights installs from the package
registries here; its vectors mean nothing, so tests check routing and shapes, not relevance.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

DIMENSIONS = 16


def build_tiny_clip(path: str | Path) -> str:
    """Write the model under ``path`` (about 250 kB) and return its directory."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    root = Path(path)
    parts = root / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (parts / "vocab.json").write_text(json.dumps(vocab))
    (parts / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(parts / "vocab.json"), str(parts / "merges.txt"))
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={
            **small,
            "vocab_size": len(vocab),
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
        },
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=DIMENSIONS,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(parts)
    CLIPProcessor(  # type: ignore[no-untyped-call]  # transformers leaves CLIPProcessor.__init__ unannotated
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    ).save_pretrained(parts)
    out = root / "tiny-clip"
    with warnings.catch_warnings():  # sentence-transformers 6 deprecates the CLIP module's old home
        warnings.simplefilter("ignore", DeprecationWarning)
        from sentence_transformers.models import CLIPModel as STCLIPModel

        SentenceTransformer(modules=[STCLIPModel(str(parts))], device="cpu").save(str(out))
    return str(out)
