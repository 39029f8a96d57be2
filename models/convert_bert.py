"""Converts a Hugging Face BertModel (safetensors + tokenizer.json) into a BERT GGUF, in NumPy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

# tokenizer.ggml.pre that convert_hf_to_gguf.py writes for this WordPiece tokenizer: its
# chkhsh (0876d13b...) is listed for both "bert-bge" and "jina-v2-en" and the later entry wins.
# llama.cpp does not use the pre-tokenizer name for WPM ("bert") vocabularies.
_TOKENIZER_PRE = "jina-v2-en"

# Tensors convert_hf_to_gguf.py drops for BertModel (embeddings only: no pooler, no MLM head).
_DROPPED_TENSORS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
_DROPPED_PREFIXES = ("cls.predictions", "cls.seq_relationship")

# SpecialVocab's default types minus "cls", which gguf has no key for (it logs a warning and
# skips it; [CLS] is written as the BOS token, exactly as convert_hf_to_gguf.py ends up doing).
_SPECIAL_TYPES = ("bos", "eos", "unk", "sep", "pad", "mask")

_POOLING_MODES = (
    ("pooling_mode_mean_tokens", gguf.PoolingType.MEAN),
    ("pooling_mode_cls_token", gguf.PoolingType.CLS),
    ("pooling_mode_lasttoken", gguf.PoolingType.LAST),
)


def convert_bert(model_dir: Path, out_path: Path, name: str | None = None) -> Path:
    """Write `model_dir` (config.json, tokenizer.json, model.safetensors) as an f32 BERT GGUF.

    Mirrors llama.cpp's convert_hf_to_gguf.py for ``BertModel`` with ``--outtype f32``: the
    WordPiece vocab with the "phantom space" transform, special tokens and add-[CLS]/[SEP] flags
    from ``gguf.SpecialVocab``, non-causal attention, the pooling type of the sentence-transformers
    ``modules.json`` / ``1_Pooling/config.json``, pooler tensors dropped. No torch/transformers.
    The output is byte-for-byte deterministic for given inputs and gguf version.
    """
    hparams = _load_json(model_dir / "config.json")
    if "BertModel" not in hparams.get("architectures", ["BertModel"]):
        raise ValueError(f"{model_dir} is not a BertModel: {hparams.get('architectures')}")
    writer = gguf.GGUFWriter(out_path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    _set_parameters(writer, model_dir, hparams, name or model_dir.name)
    _set_vocab(writer, model_dir, hparams)
    _add_tensors(writer, model_dir / "model.safetensors", hparams["num_hidden_layers"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


def _load_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _set_parameters(
    writer: gguf.GGUFWriter, model_dir: Path, hparams: dict[str, Any], name: str
) -> None:
    """TextModel.set_gguf_parameters + BertModel.set_gguf_parameters, for a plain BERT."""
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_block_count(hparams["num_hidden_layers"])
    writer.add_context_length(hparams["max_position_embeddings"])
    writer.add_embedding_length(hparams["hidden_size"])
    writer.add_feed_forward_length(hparams["intermediate_size"])
    writer.add_head_count(hparams["num_attention_heads"])
    writer.add_layer_norm_eps(hparams["layer_norm_eps"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_causal_attention(False)
    pooling = _pooling_type(model_dir)
    if pooling is not None:
        writer.add_pooling_type(pooling)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _pooling_type(model_dir: Path) -> gguf.PoolingType | None:
    """The sentence-transformers pooling mode, as convert_hf_to_gguf's _try_set_pooling_type."""
    modules_path = model_dir / "modules.json"
    if not modules_path.is_file():
        return None
    modules = _load_json(modules_path)
    paths = [m["path"] for m in modules if m["type"] == "sentence_transformers.models.Pooling"]
    if not paths:
        return None
    pooling = _load_json(model_dir / paths[0] / "config.json")
    for key, pooling_type in _POOLING_MODES:
        if pooling.get(key):
            return pooling_type
    raise NotImplementedError("Only MEAN, CLS, and LAST pooling types supported")


def _set_vocab(writer: gguf.GGUFWriter, model_dir: Path, hparams: dict[str, Any]) -> None:
    """BertModel.set_vocab: phantom-space WordPiece vocab, token types, special tokens."""
    tokens, toktypes = _vocab_base(model_dir / "tokenizer.json", hparams)
    writer.add_token_type_count(hparams.get("type_vocab_size", 1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre(_TOKENIZER_PRE)
    writer.add_token_list([_phantom(t, tt) for t, tt in zip(tokens, toktypes, strict=True)])
    writer.add_token_types(toktypes)
    special = gguf.SpecialVocab(model_dir, special_token_types=_SPECIAL_TYPES, n_vocab=len(tokens))
    special.add_to_gguf(writer, quiet=True)


def _vocab_base(tokenizer_path: Path, hparams: dict[str, Any]) -> tuple[list[str], list[int]]:
    """TextModel.get_vocab_base for a WordPiece tokenizer (no added non-special tokens here)."""
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    vocab_size = hparams.get("vocab_size", len(vocab))
    if max(vocab.values()) >= vocab_size:
        raise ValueError(f"tokenizer has ids beyond vocab_size {vocab_size}")
    reverse = {i: tok for tok, i in vocab.items()}
    added = tokenizer.get_added_tokens_decoder()
    tokens: list[str] = []
    toktypes: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            toktypes.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(reverse[i])
            special = added[i].special
            toktypes.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            toktypes.append(gguf.TokenType.NORMAL)
    return tokens, toktypes


def _phantom(token: str, toktype: int) -> str:
    """WordPiece -> llama.cpp WPM: word starts get U+2581, '##' continuations lose the prefix."""
    if toktype == gguf.TokenType.CONTROL:
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def _add_tensors(writer: gguf.GGUFWriter, safetensors_path: Path, n_blocks: int) -> None:
    tensor_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_blocks)
    for hf_name, data in load_file(str(safetensors_path)).items():
        name = _hf_name(hf_name)
        if name is None:
            continue
        gguf_name = tensor_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"cannot map tensor {hf_name!r}")
        writer.add_tensor(gguf_name, np.ascontiguousarray(data, dtype=np.float32))


def _hf_name(name: str) -> str | None:
    """BertModel.filter_tensors: strip 'bert.', rename gamma/beta, drop unused tensors."""
    name = name.removeprefix("bert.")
    if name.endswith(".gamma"):
        name = name[: -len(".gamma")] + ".weight"
    if name.endswith(".beta"):
        name = name[: -len(".beta")] + ".bias"
    if name in _DROPPED_TENSORS or name.startswith(_DROPPED_PREFIXES):
        return None
    return name
