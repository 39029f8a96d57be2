"""ModelLoadError for every way a model file can be wrong (tiny files; no model needed
except the truncated copies of the chat model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.errors import ModelLoadError
from engine.llm.llama import LlamaClient, read_gguf_metadata


def write_gguf(path: Path, arch: str, template: str | None, tensors: bool = True) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_name(f"tiny {arch}")
    if template is not None:
        writer.add_chat_template(template)
    writer.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    if tensors:
        writer.add_tensor("token_embd.weight", np.zeros((3, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


TEMPLATE = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found: .*nope.gguf"):
        LlamaClient(tmp_path / "nope.gguf")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a file"):
        LlamaClient(tmp_path)


@pytest.mark.parametrize("content", [b"", b"GG", b"<html>not a model</html>" * 10])
def test_not_a_gguf(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="not a GGUF model file"):
        LlamaClient(path)


def test_embedding_architecture_is_not_a_chat_model(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "bert.gguf", "bert", TEMPLATE)
    assert read_gguf_metadata(path)["general.architecture"] == "bert"
    with pytest.raises(ModelLoadError, match="not a chat model: its architecture is 'bert'"):
        LlamaClient(path)


def test_no_chat_template_is_not_a_chat_model(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "base.gguf", "llama", None)
    with pytest.raises(ModelLoadError, match="not a chat model: the GGUF has no chat template"):
        LlamaClient(path)


def test_llama_cpp_load_failure_is_reported(tmp_path: Path) -> None:
    """A well-formed header that llama.cpp cannot load (no weights, no hyperparameters)."""
    path = write_gguf(tmp_path / "empty.gguf", "llama", TEMPLATE, tensors=False)
    with pytest.raises(ModelLoadError, match="llama.cpp could not load") as info:
        LlamaClient(path)
    assert "empty.gguf" in str(info.value)


def test_truncated_header(tmp_path: Path, chat_model_path: Path) -> None:
    path = tmp_path / "cut.gguf"
    with chat_model_path.open("rb") as f:
        path.write_bytes(f.read(1 << 20))  # first 1 MB: ends inside the token list
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        LlamaClient(path)


def test_truncated_weights(tmp_path: Path, chat_model_path: Path) -> None:
    path = tmp_path / "cut.gguf"
    with chat_model_path.open("rb") as f:
        path.write_bytes(f.read(24 << 20))  # header intact, weights cut short
    read_gguf_metadata(path)  # the header itself is fine
    with pytest.raises(ModelLoadError, match="llama.cpp could not load .*truncated"):
        LlamaClient(path)


def test_read_gguf_metadata(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", "llama", TEMPLATE)
    meta = read_gguf_metadata(path)
    assert meta["general.architecture"] == "llama"
    assert meta["tokenizer.chat_template"] == TEMPLATE
    assert meta["tokenizer.ggml.tokens"] == 3  # arrays: their length


def test_chat_model_cut_in_half(tmp_path: Path, chat_model_path: Path) -> None:
    """A download that stopped halfway: the message names the file and says to get it again."""
    path = tmp_path / "half.gguf"
    size = chat_model_path.stat().st_size
    with chat_model_path.open("rb") as f:
        path.write_bytes(f.read(size // 2))
    with pytest.raises(ModelLoadError) as info:
        LlamaClient(path)
    message = str(info.value)
    assert str(path) in message
    assert "truncated or corrupt" in message and "again" in message


def test_the_real_embedding_model_is_not_a_chat_model(embed_path: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        LlamaClient(embed_path)
    message = str(info.value)
    assert "is not a chat model: its architecture is 'nomic-bert'" in message
    assert "Use it as the embedding model and choose a chat (instruct) GGUF" in message
