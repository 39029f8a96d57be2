"""Build the default LLM client from a model key ("chat", "fast", "small"), a GGUF path, or the URL of an
OpenAI-compatible server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.errors import ModelLoadError
from engine.llm.base import LLMClient
from engine.llm.llama import LlamaClient
from engine.llm.remote import RemoteClient, is_remote_model

__all__ = ["CHAT_MODEL_KEYS", "default_llm_client", "is_remote_model", "resolve_model_path"]

CHAT_MODEL_KEYS = ("chat", "fast", "small")


def resolve_model_path(model: str | os.PathLike[str] = "chat") -> Path:
    """The GGUF file for `model`: "chat", "fast" or "small" through models.fetch.model_path (which may
    raise ModelNotMaterialised), otherwise `model` itself taken as a path."""
    if isinstance(model, str) and model in CHAT_MODEL_KEYS:
        from models.fetch import model_path  # imported late: models/ is optional at import time

        return Path(model_path(model))
    if is_remote_model(model):
        raise ModelLoadError(f"{model} is a server address, not a model file")
    if isinstance(model, str) and model in ("embed", "minilm"):
        raise ModelLoadError(
            f"the {model!r} model is an embedding model, not a chat model; use "
            '"chat", "fast", "small" or the path of a chat GGUF'
        )
    text = os.fspath(model)
    if not text:
        raise ModelLoadError(
            'no model given: use "chat", "fast", "small" or the path of a GGUF file'
        )
    path = Path(text).expanduser()
    if path.suffix.lower() != ".gguf" and not path.exists():
        raise ModelLoadError(
            f'unknown model {text!r}: use "chat", "fast", "small", the path of a .gguf file or the URL '
            "of an OpenAI-compatible server (http://HOST:PORT/v1)"
        )
    return path


def default_llm_client(
    model: str | os.PathLike[str] = "chat", n_ctx: int | None = None, **kw: Any
) -> LLMClient:
    """The chat model client for `model`:

    - "chat" (the default), "fast", "small" or a path to a GGUF chat model: a LlamaClient (n_ctx default 4096; `kw`
      go to LlamaClient: n_threads, seed, temperature, ...);
    - an http(s):// URL such as http://127.0.0.1:8080/v1: a RemoteClient on that
      OpenAI-compatible server (n_ctx default: what the server reports; `kw` go to
      RemoteClient: tokenizer, chat_template, template_from, api_key, timeout, ..., and
      `model_name`, the served model's name, as its `model`).

    Raises ModelLoadError."""
    if is_remote_model(model):
        if "model_name" in kw:
            kw["model"] = kw.pop("model_name")
        return RemoteClient(str(model), n_ctx=n_ctx, **kw)
    return LlamaClient(resolve_model_path(model), n_ctx=4096 if n_ctx is None else n_ctx, **kw)
