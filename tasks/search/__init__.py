"""The ``search-v0`` corpus (``corpus.jsonl.gz``, the encyclopedia's pages) and task suites, and their
generator (``python -m agentgym.tasks.search.generate``)."""

CORPUS = "corpus.jsonl.gz"
