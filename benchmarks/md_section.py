"""Rewrite one benchmark's section of BENCHMARKS.md in place: the text between its start and end markers (the
markers included in `section`), or appended under `heading` the first time."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, start: str, end: str, section: str, heading: str) -> None:
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n" + section + "\n"
    path.write_text(text)


def publish(doc: dict, out: Path, md: Path | None, start: str, end: str, section: str, heading: str) -> None:
    """The end of a benchmark run: its JSON document to `out`, its section into `md` (if given), the section to
    stdout."""
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    if md:
        write_section(md, start, end, section, heading)
    print(section)
