"""A tiny cross-encoder with random weights: a 2-layer BERT sequence classifier with 1 label
and a character-level WordPiece tokenizer, saved as a transformers model directory that
``sentence_transformers.CrossEncoder(path)`` loads, so reranking runs its real code path
without a download. The weights are seeded, so every build scores the same; its scores mean
nothing, so tests check shapes, determinism and ordering, not relevance.
"""

from __future__ import annotations

from pathlib import Path

MAX_LENGTH = 128  #: tokens per (query, text) pair; longer pairs are truncated


def build_tiny_cross_encoder(path: str | Path, *, seed: int = 0) -> str:
    """Write the model under ``path`` (about 110 kB) and return its directory; ``seed`` seeds the
    random weights (the same seed gives the same model). Needs torch and transformers."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    out = Path(path) / "tiny-cross-encoder"
    out.mkdir(parents=True, exist_ok=True)
    # a token per character, word-initial and inner ("##a"): any ASCII word tokenizes without a word list
    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,;:!?'\"-()", *chars, *(f"##{c}" for c in chars)]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(out / "vocab.txt"), do_lower_case=True, model_max_length=MAX_LENGTH)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        id2label={0: "LABEL_0"},  # 1 label: one relevance score per pair
        initializer_range=0.2,  # spreads the scores (0.02 bunches them within 1e-4 of 0.5; 0.5 saturates)
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state as it was
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)
