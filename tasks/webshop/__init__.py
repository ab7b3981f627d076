"""The ``webshop-v0`` catalog (``catalog.jsonl.gz``, the shop's products) and task suites, and their
generator (``python -m agentgym.tasks.webshop.generate``)."""

CATALOG = "catalog.jsonl.gz"
