"""Writing a benchmark's section into BENCHMARKS.md between its markers (replaced on rerun)."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def write_section(section: str, begin: str, end: str, path: Path = BENCHMARKS) -> None:
    """Replace the text between `begin` and `end` (markers included in `section`), or append."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
