"""Real English sentences and their real embeddings (the embedder given), for benchmarks at scale.

The sentences come from text already on the machine: the English manual pages, /usr/share/doc
and /usr/share/info, and the docstrings of the Python standard library and installed packages.
Sentences are kept if they read as prose (40-300 characters, a capital first, a full stop last,
mostly letters), deduplicated, and shuffled with a fixed seed.

Embedding them is the slow part (with MiniLM about 150-250 sentences a second on 2 cores, with
nomic-embed-text a tenth of that), so texts and vectors are cached in the benchmark cache folder,
per embedding model, and extended on demand.

Past the real sentences on hand, `passages(n)` makes passages of two real sentences. Their
vectors are the normalised sum of the two sentences' vectors, not a fresh embedding (a million
real embeddings would take an hour and a half here); `pair_fidelity` measures how close that
stand-in is to embedding the pair for real, and the benchmark prints it.
"""

from __future__ import annotations

import ast
import gzip
import os
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import platformdirs

from engine.store.migrations import EMBEDDING_DIM

SEED = 20261125
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_ROFF_REQUEST = re.compile(r"^\.\S+.*$", re.MULTILINE)
_ROFF_ESCAPE = re.compile(r"\\f[BIRP]|\\\(..|\\[-&e]")


def cache_dir() -> Path:
    path = Path(os.environ.get("MEMEX_BENCH_CACHE") or platformdirs.user_cache_dir("memex"))
    path = path / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _prose(sentence: str) -> bool:
    if not 40 <= len(sentence) <= 300 or not sentence[0].isupper() or sentence[-1] not in ".!?":
        return False
    letters = sum(c.isalpha() or c == " " for c in sentence)
    return letters / len(sentence) > 0.9 and sentence.isascii()


def _sentences_in(text: str) -> Iterator[str]:
    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        for sentence in _SENTENCE_BREAK.split(flat):
            if _prose(sentence):
                yield sentence


def _system_texts() -> Iterator[str]:
    english_man = [p for p in Path("/usr/share/man").glob("man*") if p.is_dir()]
    for root in [*english_man, Path("/usr/share/doc"), Path("/usr/share/info")]:
        for folder, _, files in os.walk(root):
            for name in sorted(files):
                path = Path(folder, name)
                try:
                    raw = path.read_bytes()
                    if name.endswith(".gz"):
                        raw = gzip.decompress(raw)
                    text = raw.decode("utf-8")
                except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
                    continue
                yield _ROFF_ESCAPE.sub("", _ROFF_REQUEST.sub("", text))


def _python_texts() -> Iterator[str]:
    roots = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]}
    for root in sorted(roots):
        for folder, _, files in os.walk(root):
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                try:
                    tree = ast.parse(Path(folder, name).read_text("utf-8"))
                except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                    continue
                for node in ast.walk(tree):
                    if isinstance(node, ast.Constant) and isinstance(node.value, str):
                        yield node.value


def real_sentences() -> list[str]:
    """Every prose sentence found on this machine, deduplicated, in a fixed shuffled order."""
    seen: dict[str, None] = {}
    for text in (*_system_texts(), *_python_texts()):
        for sentence in _sentences_in(text):
            seen.setdefault(sentence, None)
    ordered = sorted(seen)
    np.random.default_rng(SEED).shuffle(ordered)
    return ordered


def model_tag(embedder: object) -> str:
    """The embedder's name as a part of a cache file's name: one file per embedding model, so
    the vectors of two models never mix."""
    return str(getattr(embedder, "name", "embedder")).replace("/", "_")


def embedded_sentences(n: int, embedder: object, batch: int = 512) -> tuple[list[str], np.ndarray]:
    """The first `n` real sentences and their embeddings (cached; only new ones are embedded)."""
    folder = cache_dir()
    model = model_tag(embedder)
    text_file, vector_file = folder / "sentences.txt", folder / f"sentences.{model}.f32"
    if not text_file.exists():
        text_file.write_text("\n".join(real_sentences()) + "\n")
    texts = text_file.read_text().splitlines()
    if n > len(texts):
        raise SystemExit(f"only {len(texts)} real sentences on this machine; asked for {n}")
    dim = EMBEDDING_DIM
    have = vector_file.stat().st_size // (4 * dim) if vector_file.exists() else 0
    if have < n:
        with vector_file.open("ab") as out:
            for start in range(have, n, batch):
                chunk = texts[start : min(n, start + batch)]
                vectors = embedder.embed(chunk)  # type: ignore[attr-defined]
                out.write(np.asarray(vectors, dtype=np.float32).tobytes())
                print(f"  embedded {start + len(chunk)}/{n}", file=sys.stderr, flush=True)
    vectors = np.fromfile(vector_file, dtype=np.float32, count=n * dim).reshape(n, dim)
    return texts[:n], vectors


def passages(
    n: int, texts: list[str], vectors: np.ndarray
) -> Iterator[tuple[list[str], np.ndarray]]:
    """`n` passages in chunks: the real sentences first, then pairs of them (see the module
    docstring). Deterministic."""
    real = min(n, len(texts))
    chunk = 10_000
    for start in range(0, real, chunk):
        stop = min(real, start + chunk)
        yield texts[start:stop], vectors[start:stop]
    rng = np.random.default_rng(SEED)
    made = real
    while made < n:
        size = min(chunk, n - made)
        first = rng.integers(0, len(texts), size)
        second = rng.integers(0, len(texts), size)
        summed = vectors[first] + vectors[second]
        summed /= np.linalg.norm(summed, axis=1, keepdims=True)
        yield [f"{texts[a]} {texts[b]}" for a, b in zip(first, second, strict=True)], summed
        made += size


def pair_fidelity(texts: list[str], vectors: np.ndarray, embedder: object, n: int = 200) -> float:
    """Mean cosine between a pair's stand-in vector and the real embedding of the pair."""
    rng = np.random.default_rng(SEED + 1)
    first = rng.integers(0, len(texts), n)
    second = rng.integers(0, len(texts), n)
    summed = vectors[first] + vectors[second]
    summed /= np.linalg.norm(summed, axis=1, keepdims=True)
    real = embedder.embed([f"{texts[a]} {texts[b]}" for a, b in zip(first, second, strict=True)])  # type: ignore[attr-defined]
    return float(np.mean(np.sum(summed * real, axis=1)))
