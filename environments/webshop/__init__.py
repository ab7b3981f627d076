"""Web shop: buy what an instruction asks for, through a real browser (``webshop-v0``).

A catalog of 1,200 generated products is served over HTTP by aiohttp on 127.0.0.1 and driven
through headless Chromium with Playwright; see :class:`WebShopEnv`. The catalog and the task
suites are made by ``python -m agentgym.tasks.webshop.generate``.
"""

from agentgym.environments.webshop.env import MILESTONES, WebShopEnv

__all__ = ["MILESTONES", "WebShopEnv"]
