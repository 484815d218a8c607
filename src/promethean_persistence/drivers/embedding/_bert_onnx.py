"""A BERT encoder (all-MiniLM-L6-v2's architecture) as an ONNX graph, built from its
safetensors weights with ONNX Runtime's fused transformer operators.

Building the graph from the weights needs only ``onnx`` and ``safetensors``: no PyTorch, no
export step, nothing written to disk (half a second at load). The graph computes what the
PyTorch model computes (cosine 0.9999999 on real texts, see ``tests/test_embedders.py``), so
vectors from either runtime share one embedding space and one manifest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._deps import require

_MS = "com.microsoft"  # ONNX Runtime's contrib operators: fused attention, skip + layer norm


def build_encoder(weights_path: str, *, heads: int, eps: float = 1e-12) -> bytes:
    """The serialised ONNX model of the BERT encoder whose weights are in ``weights_path``
    (a Hugging Face ``model.safetensors``), with ``heads`` attention heads and layer-norm
    epsilon ``eps``. Inputs ``input_ids``, ``token_type_ids``, ``attention_mask`` (int32,
    batch x sequence, right-padded); output the last hidden state (batch x sequence x
    hidden). Raises ``MissingDependencyError`` without ``onnx``/``safetensors``, ``KeyError``
    for weights of another architecture."""
    onnx = require("onnx", extra="local", driver="local")
    weights: dict[str, np.ndarray] = require("safetensors.numpy", extra="local", driver="local").load_file(weights_path)
    helper = onnx.helper
    initializers: list[Any] = []
    nodes: list[Any] = []

    def init(name: str, array: np.ndarray) -> str:
        initializers.append(onnx.numpy_helper.from_array(np.ascontiguousarray(array, dtype=array.dtype), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        domain = "" if op == "MatMul" else _MS
        nodes.append(helper.make_node(op, inputs, [output], domain=domain, **attrs))
        return output

    def skip_norm(value: str, skip: str, prefix: str, output: str) -> str:
        """LayerNorm(value + dense bias + skip), the weights under ``prefix`` (a BERT sublayer's output)."""
        return node(
            "SkipLayerNormalization",
            [
                value,
                skip,
                init(f"{prefix}ln_g", weights[prefix + "LayerNorm.weight"]),
                init(f"{prefix}ln_b", weights[prefix + "LayerNorm.bias"]),
                init(f"{prefix}bias", weights[prefix + "dense.bias"]),
            ],
            output,
            epsilon=eps,
        )

    e = "embeddings."
    nodes.append(
        helper.make_node(
            "EmbedLayerNormalization",
            [
                "input_ids",
                "token_type_ids",
                init("word", weights[e + "word_embeddings.weight"]),
                init("position", weights[e + "position_embeddings.weight"]),
                init("segment", weights[e + "token_type_embeddings.weight"]),
                init("embed_gamma", weights[e + "LayerNorm.weight"]),
                init("embed_beta", weights[e + "LayerNorm.bias"]),
                "attention_mask",
            ],
            ["hidden0", "mask_index"],
            domain=_MS,
            epsilon=eps,
        )
    )
    x = "hidden0"
    layers = sum(1 for k in weights if k.endswith("attention.self.query.weight"))
    for i in range(layers):
        p, a = f"encoder.layer.{i}.", f"encoder.layer.{i}.attention."
        # torch's Linear keeps weight as (out, in): transposed for MatMul; q, k, v side by side
        qkv_w = np.concatenate([weights[f"{a}self.{k}.weight"].T for k in ("query", "key", "value")], axis=1)
        qkv_b = np.concatenate([weights[f"{a}self.{k}.bias"] for k in ("query", "key", "value")])
        att = node(
            "Attention",
            [x, init(f"{i}.qkv_w", qkv_w), init(f"{i}.qkv_b", qkv_b), "mask_index"],
            f"{i}.att",
            num_heads=heads,
        )
        att_out = node("MatMul", [att, init(f"{i}.ao_w", weights[a + "output.dense.weight"].T)], f"{i}.ao")
        h1 = skip_norm(att_out, x, a + "output.", f"{i}.h1")
        inner = node("MatMul", [h1, init(f"{i}.in_w", weights[p + "intermediate.dense.weight"].T)], f"{i}.in")
        act = node("BiasGelu", [inner, init(f"{i}.in_b", weights[p + "intermediate.dense.bias"])], f"{i}.act")
        out = node("MatMul", [act, init(f"{i}.out_w", weights[p + "output.dense.weight"].T)], f"{i}.out")
        x = skip_norm(out, h1, p + "output.", f"hidden{i + 1}")
    hidden = weights[e + "word_embeddings.weight"].shape[1]
    tensor = onnx.TensorProto
    inputs = [
        helper.make_tensor_value_info(k, tensor.INT32, ["batch", "sequence"])
        for k in ("input_ids", "token_type_ids", "attention_mask")
    ]
    outputs = [helper.make_tensor_value_info(x, tensor.FLOAT, ["batch", "sequence", hidden])]
    graph = helper.make_graph(nodes, "bert_encoder", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(_MS, 1)])
    data: bytes = model.SerializeToString()
    return data
