"""The built app (build.spec): build it in a temp dir, then run the binary the way a user's
laptop would, with no venv, no PYTHONPATH and a fresh HOME. Run with `make test-dist`."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import apsw
import pytest

from models import fetch, manifest

pytestmark = pytest.mark.dist

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 180  # a cold disk cache reads ~600 MB of models first
EXIT_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/memex built from this checkout into a temp dir (the models come from the usual
    models dir; `make test-dist` assembles them first)."""
    root = tmp_path_factory.mktemp("build")
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "PyInstaller", str(REPO / "build.spec"), "--noconfirm"]
        + ["--distpath", str(root / "dist"), "--workpath", str(root / "work")],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    folder = root / "dist" / "memex"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"\nbuilt in {time.monotonic() - start:.0f}s: {size / 2**20:,.0f} MiB")
    return folder


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """What a user's session has: a HOME and a system PATH; no venv, no PYTHONPATH, no model
    or config overrides from the test run."""
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", **extra}


def run_binary(
    bundle: Path, home: Path, *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bundle / "memex"), *args],
        env=clean_env(home),
        cwd=cwd or home,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
    }


@pytest.fixture
def untouched(bundle: Path) -> Iterator[None]:
    """Nothing a test runs may write next to the binary: the app's data lives in the user's
    folders (platformdirs)."""
    before = listing(bundle)
    yield
    assert listing(bundle) == before


def test_bundle_carries_what_pyinstaller_does_not_find(bundle: Path) -> None:
    inside = bundle / "_internal"
    libs = {p.name for p in (inside / "llama_cpp" / "lib").iterdir()}
    assert {"libllama.so", "libggml.so", "libggml-base.so", "libggml-cpu.so"} <= libs
    assert list((inside / "sqlite_vec").glob("vec0.*"))
    assert list((inside / "apsw").glob("__init__*"))  # the SQLite driver, with its own SQLite
    platforms = {p.name for p in (inside / "PySide6" / "Qt" / "plugins" / "platforms").iterdir()}
    assert {"libqxcb.so", "libqoffscreen.so", "libqwayland.so"} <= platforms
    for key in ("chat", "embed"):
        spec = manifest.get_model(key)
        assert (inside / "models" / spec.filename).stat().st_size == spec.size
    assert not (inside / "models" / manifest.get_model("small").filename).exists()
    assert (inside / "models" / fetch.BUNDLE_INDEX).is_file()
    # build-time tools and the hub downloader stay out
    for left_out in ("gguf", "safetensors", "tokenizers", "huggingface_hub"):
        assert not (inside / left_out).exists(), left_out


@pytest.mark.usefixtures("untouched")
def test_selftest_passes_in_a_clean_environment(bundle: Path, home: Path) -> None:
    done = run_binary(bundle, home, "--selftest")
    print(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("memex selftest: PASS in ")
    for stage in ("embedding model", "chat model", "sqlite-vec", "agent step", "archival", "qt"):
        assert stage in line
    assert done.stderr.strip() == "", done.stderr  # a clean run says nothing else
    # the selftest used a temp file: no memory file appeared in the user's data folder
    assert not (home / ".local" / "share" / "memex").exists()
    assert list((home / ".cache" / "memex" / "verified").glob("*.verified"))  # checked once


@pytest.mark.usefixtures("untouched")
def test_bad_model_path_fails_with_a_clear_message(bundle: Path, home: Path) -> None:
    done = run_binary(bundle, home, "--selftest", "--model", str(home / "missing.gguf"))
    assert done.returncode == 1
    assert "FAIL at chat model" in done.stdout
    assert "missing.gguf" in done.stdout and "Choose a GGUF file" in done.stdout


def test_damaged_bundled_model_says_download_again(bundle: Path, tmp_path: Path, home: Path):
    """A download cut short: the embedding model is truncated in a copy of the app."""
    copy = tmp_path / "memex"
    subprocess.run(["cp", "-al", str(bundle), str(copy)], check=True)  # hard links: cheap
    model = copy / "_internal" / "models" / manifest.get_model("embed").filename
    data = model.read_bytes()[: 10 * 2**20]
    model.unlink()  # a new file: the shared build keeps its own
    model.write_bytes(data)
    done = run_binary(copy, home, "--selftest")
    assert done.returncode == 1
    assert "FAIL at embedding model" in done.stdout
    assert "download Memex again" in done.stdout


@pytest.mark.usefixtures("untouched")
def test_window_starts_keeps_its_file_and_closes_when_asked(bundle: Path, home: Path) -> None:
    """The GUI, headless: it opens the default file in the user data folder, a second copy on
    that file is told it is in use, and SIGTERM (a logout, `kill`) closes it cleanly."""
    window = subprocess.Popen(
        [str(bundle / "memex"), "-v"],
        env=clean_env(home, QT_QPA_PLATFORM="offscreen"),
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = Output(window)
        log = output.until("INFO:memex:ready in ", READY_TIMEOUT_S)
        db = home / ".local" / "share" / "memex" / "memex.db"
        assert db.is_file(), log

        second = run_binary(bundle, home, "--selftest", "--db", str(db))
        assert second.returncode == 1
        assert "FAIL at memory file" in second.stdout
        assert "open in another Memex" in second.stdout

        window.send_signal(signal.SIGTERM)
        window.wait(timeout=EXIT_TIMEOUT_S)
        everything = output.to_end(EXIT_TIMEOUT_S)
    finally:
        if window.poll() is None:
            window.kill()
            window.wait()
    assert window.returncode == 0, everything
    assert "INFO:memex:closed" in everything
    for name in ("Traceback", "Fatal Python error", "QThread: Destroyed"):
        assert name not in everything
    assert sorted(p.name for p in home.iterdir()) == [".cache", ".config", ".local"]  # cwd: none
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("SELECT count(*) FROM agents").fetchall() == [(1,)]


class Output:
    """A process's output, read by a thread so that a process that hangs without printing
    cannot hang the test."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.process = process
        self.seen = ""
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(process.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def until(self, marker: str, timeout: float) -> str:
        """Everything so far, once a line holds `marker`; fails on exit or timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"exited with {self.process.wait()} before {marker!r}:\n{self.seen}")
            self.seen += line
            if marker in line:
                return self.seen
        pytest.fail(f"no {marker!r} within {timeout}s:\n{self.seen}")

    def to_end(self, timeout: float) -> str:
        """Everything the process printed, once it has closed its output."""
        while (line := self._lines.get(timeout=timeout)) is not None:
            self.seen += line
        return self.seen
