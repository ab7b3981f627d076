"""The household task suites (JSONL, one file per suite) and ``generate``, which rewrites them:
``python -m agentgym.tasks.household.generate`` (``--check`` only compares)."""
