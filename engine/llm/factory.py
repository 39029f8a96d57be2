"""Build the default LLM client from a model key ("chat", "small") or a GGUF path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.errors import ModelLoadError
from engine.llm.llama import LlamaClient

__all__ = ["CHAT_MODEL_KEYS", "default_llm_client", "resolve_model_path"]

CHAT_MODEL_KEYS = ("chat", "small")


def resolve_model_path(model: str | os.PathLike[str] = "chat") -> Path:
    """The GGUF file for `model`: "chat" or "small" through models.fetch.model_path (which may
    raise ModelNotMaterialised), otherwise `model` itself taken as a path."""
    if isinstance(model, str) and model in CHAT_MODEL_KEYS:
        from models.fetch import model_path  # imported late: models/ is optional at import time

        return Path(model_path(model))
    if isinstance(model, str) and model == "embed":
        raise ModelLoadError(
            'the "embed" model is the embedding model, not a chat model; use "chat", "small" '
            "or the path of a chat GGUF"
        )
    text = os.fspath(model)
    if not text:
        raise ModelLoadError('no model given: use "chat", "small" or the path of a GGUF file')
    path = Path(text).expanduser()
    if path.suffix.lower() != ".gguf" and not path.exists():
        raise ModelLoadError(
            f'unknown model {text!r}: use "chat", "small" or the path of a .gguf file'
        )
    return path


def default_llm_client(
    model: str | os.PathLike[str] = "chat", n_ctx: int = 4096, **kw: Any
) -> LlamaClient:
    """A LlamaClient for `model` ("chat", "small" or a path to a GGUF chat model); `kw` go to
    LlamaClient (n_threads, seed, temperature, ...). Raises ModelLoadError."""
    return LlamaClient(resolve_model_path(model), n_ctx=n_ctx, **kw)
