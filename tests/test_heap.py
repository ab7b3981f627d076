"""Freed heap memory goes back to the operating system (glibc's malloc_trim)."""

import sys

import pytest

from agentgym._heap import _malloc_trim, trim_heap


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux") or _malloc_trim() is None, reason="needs glibc")
def test_trim_returns_freed_fragmented_memory():
    import ctypes

    # 64 KiB blocks stay below glibc's mmap threshold; every 16th is kept, so no free run sits at the
    # top of the heap and glibc's own trimming on free cannot give the rest back
    blocks = [ctypes.create_string_buffer(64 * 1024) for _ in range(4000)]
    for b in blocks:
        ctypes.memset(b, 1, len(b))
    kept = blocks[::16]
    del blocks
    before = _rss_mb()
    trim_heap()
    after = _rss_mb()
    assert before - after > 150, (before, after)
    assert len(kept) == 250
