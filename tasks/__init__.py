"""Task suites as data (JSONL, one folder per environment) and the seeded generators that made them."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path


def write_generated(files: dict[str, str], folder: Path, *, check: bool, command: str) -> int:
    """Write a generator's ``files`` (name -> text; a ``.gz`` name is gzipped) into ``folder``, or with
    ``check`` only compare them with what is there. Returns the exit status: 1 when ``check`` finds a
    file out of date (and names ``command``, which remakes it), else 0."""
    stale = []
    for name, text in files.items():
        path = folder / name
        data = text.encode()
        if name.endswith(".gz"):  # mtime 0: the same text gives the same bytes
            data = gzip.compress(data, mtime=0)
        if check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(name.split(".")[0])
            continue
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"{path}: {text.count(chr(10))} lines, {len(data) / 1e6:.2f} MB")
    if stale:
        print(f"out of date: {', '.join(stale)}; run {command}", file=sys.stderr)
        return 1
    return 0
