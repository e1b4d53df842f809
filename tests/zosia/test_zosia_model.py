"""The tiny GGUF: gguf reads it back, it has what llama.cpp requires, and it is deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")
import tinymodel


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("m") / "tiny.gguf"
    tinymodel.write_model(p)
    return p


def _field(r: gguf.GGUFReader, key: str):
    f = r.fields[key]
    return f.contents() if hasattr(f, "contents") else f.parts[f.data[0]]


def test_reads_back_with_required_keys(model: Path) -> None:
    r = gguf.GGUFReader(str(model))
    assert _field(r, "general.architecture") == "llama"
    for key in ("llama.context_length", "llama.embedding_length", "llama.block_count",
                "llama.feed_forward_length", "llama.attention.head_count",
                "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.model",
                "tokenizer.ggml.tokens"):
        assert key in r.fields, key
    assert _field(r, "llama.embedding_length") == tinymodel.N_EMBD
    assert _field(r, "llama.block_count") == tinymodel.N_LAYER
    assert _field(r, "tokenizer.ggml.model") == "llama"


def test_spm_vocabulary(model: Path) -> None:
    r = gguf.GGUFReader(str(model))
    tokens = _field(r, "tokenizer.ggml.tokens")
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert "<0x00>" in tokens and "<0xFF>" in tokens
    assert "\u2581the" in tokens
    assert len(tokens) == len(set(tokens))


def test_tensors(model: Path) -> None:
    r = gguf.GGUFReader(str(model))
    names = {t.name for t in r.tensors}
    assert {"token_embd.weight", "output_norm.weight", "output.weight"} <= names
    for i in range(tinymodel.N_LAYER):
        for t in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm",
                  "ffn_gate", "ffn_up", "ffn_down"):
            assert f"blk.{i}.{t}.weight" in names
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in r.tensors)
    assert model.stat().st_size < 2 << 20


def test_deterministic(model: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.gguf"
    tinymodel.write_model(again)
    assert again.read_bytes() == model.read_bytes()
    other = tmp_path / "other.gguf"
    tinymodel.write_model(other, seed=tinymodel.SEED + 1)
    assert other.read_bytes() != model.read_bytes()
