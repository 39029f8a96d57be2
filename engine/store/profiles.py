"""What an embedding model expects beyond its weights: the prefixes it was trained with, and
whether its first dimensions are an embedding of their own (light: no llama_cpp import, so the
settings dialog can judge a file from its header alone)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.store.migrations import EMBEDDING_DIM


@dataclass(frozen=True)
class EmbeddingProfile:
    """How to embed with one family of models."""

    query_prefix: str = ""  # before a search query
    document_prefix: str = ""  # before a text stored to be found
    # Matryoshka-trained: layer-normed, the first d dimensions are themselves an embedding, so
    # a wider model can fill the file's EMBEDDING_DIM-wide vectors
    matryoshka: bool = False
    # cosine distance from a query past which a text is no match. Each model spreads its
    # distances its own way: all-MiniLM-L6-v2's unrelated texts lie at 0.86 (median), nomic-
    # embed's at 0.49, so one threshold would let every text through for one of them.
    max_distance: float = 0.75
    # how many times the usual candidates the nearest-vector search re-scores (engine.memory.
    # vectors): a model whose dimensions sit off zero tells less of its cosine by its signs
    sign_bit_oversample: int = 1


PLAIN = EmbeddingProfile()
# nomic-embed-text: asymmetric prefixes (https://huggingface.co/nomic-ai/nomic-embed-text-v1.5);
# v1.5 is Matryoshka-trained at 768, 512, 256, 128 and 64 dims. On the LoCoMo dev set its first
# 384 find as much as all 768 (bench/retrieval.py: R@10 0.822 against 0.828).
# Its threshold lets about as many unrelated texts through as MiniLM's 0.75 does (18% against
# 15%) and keeps 99% of the texts that answer (MiniLM: 96%); at 0.75 every text passed
# (bench/vector_threshold.py: LoCoMo questions against their evidence turns and against
# another conversation's turns).
NOMIC_V1 = EmbeddingProfile("search_query: ", "search_document: ", max_distance=0.45)
# Its sign bits tell less of its cosine than MiniLM's: on 3,072 real sentences and 100 queries,
# the true 10 nearest are among the 20 nearest by bits for 0.45 of them (MiniLM 0.74), among
# the 80 nearest for 0.74; so it re-scores 4x the candidates. bench/archival_scale.py, 100k
# passages: recall@10 against exact search 0.675 -> 0.887, the nearest vectors 5.0 -> 14.2 ms
# p50; at 1M 0.680 -> 0.856, 26 -> 62 ms (a corpus of pairs of 3,072 real sentences).
NOMIC_V15 = EmbeddingProfile(
    "search_query: ",
    "search_document: ",
    matryoshka=True,
    max_distance=0.45,
    sign_bit_oversample=4,
)


def profile_for(name: str, architecture: str) -> EmbeddingProfile:
    """The profile of a model, from its GGUF's general.name and general.architecture."""
    if architecture == "nomic-bert":
        return NOMIC_V15 if "v1.5" in name.lower() else NOMIC_V1
    return PLAIN


def stored_width(profile: EmbeddingProfile, width: int) -> int | None:
    """The width of the vectors a model of `width` dimensions stores, or None if it cannot fill
    the file's EMBEDDING_DIM-wide vectors."""
    if width == EMBEDDING_DIM or (profile.matryoshka and width > EMBEDDING_DIM):
        return EMBEDDING_DIM
    return None
