from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from engine.errors import ModelLoadError, ModelNotMaterialised
from engine.llm.factory import default_llm_client, resolve_model_path


@pytest.fixture
def fake_fetch(monkeypatch, tmp_path):
    """A stand-in for models.fetch whose model_path maps keys to files in tmp_path."""
    calls: list[str] = []

    def model_path(key: str) -> Path:
        calls.append(key)
        if key == "small":
            raise ModelNotMaterialised("small model not assembled; run memex-models")
        return tmp_path / f"{key}.gguf"

    module = types.ModuleType("models.fetch")
    module.model_path = model_path  # type: ignore[attr-defined]
    module.repair_hint = lambda: "run `make models`"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "models.fetch", module)
    return calls


def test_keys_resolve_through_models_fetch(fake_fetch, tmp_path) -> None:
    assert resolve_model_path("chat") == tmp_path / "chat.gguf"
    assert fake_fetch == ["chat"]
    with pytest.raises(ModelNotMaterialised):
        resolve_model_path("small")


def test_paths_and_bad_names(tmp_path) -> None:
    assert resolve_model_path(str(tmp_path / "x.gguf")) == tmp_path / "x.gguf"
    assert resolve_model_path(tmp_path / "x.gguf") == tmp_path / "x.gguf"
    existing = tmp_path / "model.bin"
    existing.write_bytes(b"")
    assert resolve_model_path(str(existing)) == existing
    with pytest.raises(ModelLoadError, match="embedding model"):
        resolve_model_path("embed")
    with pytest.raises(ModelLoadError, match="unknown model 'gpt-4'"):
        resolve_model_path("gpt-4")


def test_default_llm_client_reports_load_errors(fake_fetch, tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found: .*chat.gguf"):
        default_llm_client("chat")
    with pytest.raises(ModelLoadError, match="not found"):
        default_llm_client(str(tmp_path / "missing.gguf"), n_ctx=1024)


@pytest.mark.slow
def test_default_llm_client_loads_a_path(chat_model_path) -> None:
    client = default_llm_client(str(chat_model_path), n_ctx=1024, n_threads=1)
    try:
        assert client.context_window == 1024
    finally:
        client.close()
