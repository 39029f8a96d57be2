"""A pure NumPy forward pass of all-MiniLM-L6-v2 (sentence-transformers), the embedder's oracle.

BERT encoder (post-LN, GELU(erf)) on the HF safetensors weights, mean pooling over the
attention mask, L2 normalisation: what SentenceTransformer("all-MiniLM-L6-v2").encode() computes
(except that it truncates at 256 tokens; this reference takes whatever ids it is given).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from safetensors.numpy import load
from tokenizers import Tokenizer

_erf = np.vectorize(math.erf, otypes=[np.float64])


@dataclass(frozen=True)
class MiniLMReference:
    weights: dict[str, np.ndarray]
    config: dict
    tokenizer: Tokenizer

    @classmethod
    def from_bytes(cls, safetensors: bytes, config_json: bytes, tokenizer_json: bytes):
        weights = {k: v.astype(np.float64) for k, v in load(safetensors).items()}
        tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        tokenizer.no_padding()  # tokenizer.json pads every input to 128 tokens
        tokenizer.no_truncation()
        return cls(weights, json.loads(config_json), tokenizer)

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def embed_ids(self, ids: list[int]) -> np.ndarray:
        """Sentence embedding (unit length, float64) of one sequence of token ids."""
        hidden = self._embeddings(np.asarray(ids))
        for layer in range(self.config["num_hidden_layers"]):
            hidden = self._layer(hidden, f"encoder.layer.{layer}.")
        pooled = hidden.mean(axis=0)  # attention mask is all ones for one unpadded sequence
        return pooled / np.linalg.norm(pooled)

    def embed(self, text: str) -> np.ndarray:
        return self.embed_ids(self.token_ids(text))

    def _embeddings(self, ids: np.ndarray) -> np.ndarray:
        w = self.weights
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(len(ids))]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        return self._norm(x, "embeddings.LayerNorm.")

    def _layer(self, x: np.ndarray, p: str) -> np.ndarray:
        attn = self._dense(self._attention(x, p + "attention.self."), p + "attention.output.dense.")
        x = self._norm(x + attn, p + "attention.output.LayerNorm.")
        ff = _gelu(self._dense(x, p + "intermediate.dense."))
        return self._norm(x + self._dense(ff, p + "output.dense."), p + "output.LayerNorm.")

    def _attention(self, x: np.ndarray, p: str) -> np.ndarray:
        n_heads = self.config["num_attention_heads"]
        n, d = x.shape
        hd = d // n_heads
        q, k, v = (
            self._dense(x, f"{p}{m}.").reshape(n, n_heads, hd).transpose(1, 0, 2)
            for m in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        return (probs @ v).transpose(1, 0, 2).reshape(n, d)

    def _dense(self, x: np.ndarray, p: str) -> np.ndarray:
        return x @ self.weights[p + "weight"].T + self.weights[p + "bias"]

    def _norm(self, x: np.ndarray, p: str) -> np.ndarray:
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        y = (x - mu) / np.sqrt(var + self.config["layer_norm_eps"])
        return y * self.weights[p + "weight"] + self.weights[p + "bias"]


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
