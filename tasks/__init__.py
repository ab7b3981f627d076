"""Task suites as data (JSONL, one folder per environment) and the seeded generators that made them."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any, Iterator


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
    if check:
        print(f"up to date: {len(files)} files in {folder}")
    return 0


def to_jsonl(rows: list[dict]) -> str:
    """One JSON object a line, keys sorted: the same rows give the same bytes."""
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def read_jsonl(path: str | Path, what: str) -> Iterator[tuple[int, Any]]:
    """The line number and parsed value of each non-blank line of a JSONL file (gzipped if it ends in ``.gz``);
    a line that is not JSON raises ConfigError saying it is not ``what``."""
    from agentgym.errors import ConfigError

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    value = json.loads(line)
                except ValueError as exc:
                    raise ConfigError(f"{path}, line {number}: not {what} ({exc})") from None
                yield number, value
