"""engine.store.embed: the GGUF embedder against a NumPy forward pass of all-MiniLM-L6-v2, and
the default nomic-embed-text-v1.5 with its prefixes and its first 384 dimensions."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.errors import InvalidInput, ModelLoadError, ModelNotMaterialised
from engine.llm import llama
from engine.store.embed import BATCH_TEXTS, Embedder, _first_dims, default_embedder
from engine.store.profiles import NOMIC_V15, PLAIN, profile_for, stored_width
from models import fetch, manifest
from tests.conftest import model_unavailable
from tests.engine.store.minilm_reference import MiniLMReference

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    'Wait... what?! (Really) -- "quoted", [bracketed] & {braced}; done: 100%!',
    "Café naïve résumé: Zürich, São Paulo, Ångström, straße.",
    "東京タワーは333メートルです。Привет, мир! Γειά σου κόσμε.",
    "Order #12345 shipped 2024-03-15 09:41; total $1,299.99 (incl. 8.25% tax) +1-800-555-0199.",
    "def add(a, b):\n\treturn a + b  # TODO: handle overflow",
    "I ❤️ pizza 🍕 and ☕ in the morning",
    " ".join(
        [
            "Memex keeps every conversation in one SQLite file and recalls what matters.",
            "It summarises old turns, stores facts about the user, searches its archive",
            "by meaning, and never sends anything over the network; the models run locally.",
        ]
        * 6
    ),
]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="session")
def reference() -> MiniLMReference:
    try:
        archive = fetch.locate_source(manifest.MINILM.sources[0])
    except ModelNotMaterialised as e:
        model_unavailable(str(e))
    with zipfile.ZipFile(archive) as z:
        return MiniLMReference.from_bytes(
            z.read("model.safetensors"), z.read("config.json"), z.read("tokenizer.json")
        )


def test_attributes(minilm: Embedder, embedder: Embedder) -> None:
    assert minilm.name == "all-MiniLM-L6-v2"
    assert minilm.dim == 384
    assert minilm.profile == PLAIN  # no prefixes: a query is embedded as a text is
    assert embedder.name == "nomic-embed-text-v1.5"
    assert embedder.dim == 384  # of its 768
    assert embedder.profile == NOMIC_V15


def test_sentences_are_not_trivial(reference: MiniLMReference) -> None:
    lengths = [len(reference.token_ids(s)) for s in SENTENCES]
    assert max(lengths) > 250  # the long one
    assert 100 in reference.token_ids(SENTENCES[6])  # emoji -> [UNK]


@pytest.mark.parametrize("text", SENTENCES, ids=range(len(SENTENCES)))
def test_tokenisation_matches_hf_tokenizer(
    minilm: Embedder, reference: MiniLMReference, text: str
) -> None:
    assert minilm.tokenize(text) == reference.token_ids(text)


@pytest.mark.parametrize("text", SENTENCES, ids=range(len(SENTENCES)))
def test_matches_numpy_reference(minilm: Embedder, reference: MiniLMReference, text: str) -> None:
    assert _cos(minilm.embed_one(text), reference.embed(text)) >= 0.999


def test_batch_shape_dtype_and_norm(embedder: Embedder) -> None:
    vectors = embedder.embed(SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batch_equals_one_by_one(embedder: Embedder) -> None:
    texts = [*SENTENCES, *(f"note number {i}" for i in range(40)), ""]
    batched = embedder.embed(texts)
    for text, row in zip(texts, batched, strict=True):
        assert _cos(row, embedder.embed_one(text)) >= 0.9999


def test_a_query_takes_every_core_unless_a_chat_model_generates(embedder: Embedder) -> None:
    cores = llama.available_cpus()
    alone = embedder.embed_query("when did we ship the inventory api?")
    assert not llama.chat_model_generating()
    assert embedder._threads_for(1) == cores
    with llama._generating():  # what LlamaClient.complete holds while it generates
        assert llama.chat_model_generating()
        assert embedder._threads_for(1) == max(1, min(4, cores // 2))
        assert embedder._threads_for(BATCH_TEXTS) == cores  # a batch: every core still
        beside = embedder.embed_query("when did we ship the inventory api?")
    assert not llama.chat_model_generating()
    assert _cos(alone, beside) >= 0.9999  # the thread count changes the time, not the vector


def test_empty_inputs(minilm: Embedder, reference: MiniLMReference) -> None:
    vector = minilm.embed_one("")
    assert vector.shape == (384,)
    assert np.isfinite(vector).all()
    assert _cos(vector, reference.embed("")) >= 0.999
    assert minilm.embed([]).shape == (0, 384)


def test_long_input_is_truncated_to_the_window(
    minilm: Embedder, reference: MiniLMReference
) -> None:
    text = "recall " * 700 + "the end"
    tokens = minilm.tokenize(text)
    assert len(tokens) == 512
    assert tokens[0] == 101 and tokens[-1] == 102  # [CLS] ... [SEP] survive truncation
    hf = reference.token_ids(text)
    expected = reference.embed_ids(hf[:511] + hf[-1:])
    assert _cos(minilm.embed_one(text), expected) >= 0.999


def test_meaning(embedder: Embedder) -> None:
    cat, kitten, tax = embedder.embed(
        ["The cat sleeps on the sofa.", "A kitten is napping on the couch.", "File taxes by April."]
    )
    assert _cos(cat, kitten) > _cos(cat, tax) + 0.3


def test_not_text_is_refused(embedder: Embedder) -> None:
    with pytest.raises(InvalidInput):
        embedder.embed("a bare string")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        embedder.embed([b"bytes"])  # type: ignore[list-item]


def test_lone_surrogate_does_not_crash(embedder: Embedder) -> None:
    assert embedder.embed_one("broken \ud800 text").shape == (384,)


def test_loading_is_quiet(embed_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with Embedder(embed_path) as e:
        e.embed(["quiet please"])
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_default_embedder(embed_path: Path) -> None:
    with default_embedder() as e:
        assert e.path == embed_path
        assert e.name == "nomic-embed-text-v1.5"


def test_queries_and_texts_are_embedded_with_their_own_prefixes(embedder: Embedder) -> None:
    question = "Which city did I move to?"
    query, text = embedder.embed_query(question), embedder.embed_one(question)
    assert query.shape == text.shape == (384,)
    assert np.linalg.norm(query) == pytest.approx(1.0, abs=1e-5)
    assert _cos(query, text) < 0.99  # "search_query: " and "search_document: " differ
    wide = np.asarray(
        [
            _nomic_full(embedder, "search_query: " + question),
            _nomic_full(embedder, "search_document: " + question),
        ]
    )
    cut = _first_dims(wide, 384)  # nomic's recipe: layer norm over all 768, then the cut
    assert _cos(query, cut[0]) >= 0.9999 and _cos(text, cut[1]) >= 0.9999


def _nomic_full(embedder: Embedder, text: str) -> np.ndarray:
    """All 768 dimensions of the model's pooled output for `text` (no prefix added)."""
    return embedder._encode([embedder.tokenize(text)])[0]


def test_a_question_is_nearer_the_text_that_answers_it(embedder: Embedder) -> None:
    query = embedder.embed_query("When did Melanie paint the sunrise?")
    answer, other = embedder.embed(
        [
            "[8 May 2023] Melanie: I painted that lake sunrise last year, it's special to me.",
            "[8 May 2023] Melanie: The kids loved the pottery workshop on Saturday.",
        ]
    )
    assert _cos(query, answer) > _cos(query, other) + 0.1


def test_profiles_come_from_the_models_header() -> None:
    assert profile_for("nomic-embed-text-v1.5", "nomic-bert") == NOMIC_V15
    assert profile_for("nomic-embed-text-v1", "nomic-bert").matryoshka is False
    assert profile_for("all-MiniLM-L6-v2", "bert") == PLAIN
    assert stored_width(NOMIC_V15, 768) == 384
    assert stored_width(PLAIN, 384) == 384
    assert stored_width(PLAIN, 768) is None  # a wider model that was not trained to be cut


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist: run `make models`"):
        Embedder(tmp_path / "nope.gguf")


def test_corrupt_file(tmp_path: Path, embed_path: Path) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf at all" * 100)
    with pytest.raises(ModelLoadError, match="corrupt"):
        Embedder(garbage)
    truncated = tmp_path / "truncated.gguf"
    with open(embed_path, "rb") as f:
        truncated.write_bytes(f.read(5_000_000))
    with pytest.raises(ModelLoadError, match="corrupt"):
        Embedder(truncated)


def test_chat_model_is_not_an_embedder() -> None:
    try:
        small = fetch.model_path("small")
    except ModelNotMaterialised as e:
        model_unavailable(str(e))
    with pytest.raises(ModelLoadError, match="not a \\(non-causal\\) embedding model"):
        Embedder(small)


def test_closed_embedder_refuses(embed_path: Path) -> None:
    e = Embedder(embed_path)
    e.close()
    e.close()  # idempotent
    with pytest.raises(ModelLoadError, match="closed"):
        e.embed_one("too late")
