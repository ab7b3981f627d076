"""``webshop-v0``: buy what an instruction asks for in a web shop, through a real browser."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import agentgym.tasks.webshop as webshop_tasks
from agentgym.env import Environment, tool
from agentgym.environments.webshop.shop import Product, fits, load_catalog, meets, score
from agentgym.environments.webshop.site import shop_server
from agentgym.errors import ConfigError, InvalidActionError
from agentgym.parsing import keyword_action
from agentgym.tools.browser import BrowserPage, PageView
from agentgym.tools.search import fold
from agentgym.types import Milestone, Task, ToolCall

MILESTONES = (
    Milestone(id="match_listed", description="a results page listed a product that meets the instruction", weight=0.1),
    Milestone(id="match_opened", description="opened the page of a product that meets the instruction", weight=0.2),
    Milestone(id="options_chosen", description="chose every option the instruction asks for on such a page",
              weight=0.3),
    Milestone(id="purchased", description="bought a product that meets the instruction in full", weight=1.0),
)
_GOAL_KEYS = ("category", "attributes", "options", "price_max")


@dataclass(frozen=True)
class Place:
    """Where the browser is, read from its address: the page kind and what the address carries."""

    kind: str  # home, results, item, done, other
    query: str = ""
    page: int = 1
    asin: str = ""
    tab: str = ""  # on an item: "", "description" or "features"
    chosen: dict[str, str] = field(default_factory=dict)

    def key(self) -> str:
        chosen = ",".join(f"{k}={v}" for k, v in sorted(self.chosen.items()))
        if self.kind == "results":
            return f"results|{fold(' '.join(self.query.split()))}|{self.page}"
        if self.kind in ("item", "done"):
            return f"{self.kind}|{self.asin}|{self.tab}|{chosen}"
        return self.kind


def place_of(url: str, products: dict[str, Product]) -> Place:
    """The :class:`Place` of a shop address (options a product does not offer are ignored, as the shop does)."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    path = [p for p in parts.path.split("/") if p]
    if not path:
        return Place("home")
    if path == ["search"]:
        try:
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            page = 1
        return Place("results", query=query.get("q", ""), page=page)
    if path[0] in ("item", "done") and len(path) in (2, 3) and path[1] in products:
        product = products[path[1]]
        chosen = {k: query[k] for k in product.options if query.get(k) in product.options[k]}
        tab = path[2] if len(path) == 3 else ""
        return Place(path[0], query=query.get("q", ""), asin=path[1], tab=tab, chosen=chosen)
    return Place("other")


def check_goal(task: Task) -> dict[str, Any]:
    """The task's goal, or a ConfigError naming what is missing or mistyped."""
    goal = task.data.get("goal")
    missing = [k for k in _GOAL_KEYS if not isinstance(goal, dict) or k not in goal]
    if missing:
        raise ConfigError(f"task {task.id} has no data['goal'][{missing[0]!r}]; webshop-v0 tasks need a goal "
                          f"with {', '.join(_GOAL_KEYS)}")
    assert isinstance(goal, dict)
    good = (isinstance(goal["category"], str)
            and isinstance(goal["attributes"], list) and all(isinstance(a, str) for a in goal["attributes"])
            and isinstance(goal["options"], dict) and all(isinstance(v, str) for v in goal["options"].values())
            and isinstance(goal["price_max"], (int, float)) and not isinstance(goal["price_max"], bool))
    if not good:
        raise ConfigError(f"task {task.id}: data['goal'] needs category (a string), attributes (a list of strings), "
                          f"options (name -> value strings) and price_max (a number); got {goal!r}")
    return goal


def expert_query(goal: dict[str, Any]) -> str:
    """What the expert searches: the instruction's attributes and category."""
    return " ".join([*goal["attributes"], goal["category"]])


class WebShopEnv(Environment):
    """Find and buy a product in a web shop served over HTTP and driven through headless Chromium.

    Each task is a shopping instruction (``i need a waterproof backpack in black, 30 l, and price
    lower than 60.00 dollars``). The agent types a query into the shop's search box
    (``search``) and clicks links and buttons by their label (``click``): results pages, product
    pages with options (color, size, ...), Description and Features, ``Buy Now``. Every action is
    a real keystroke or click in Chromium; the observation is the rendered page as text, with
    what can be clicked in brackets (``[Buy Now]``, ``[navy blue] (selected)``).

    Buying ends the episode. Its reward, as in WebShop: the share of the instruction's
    attributes the product has, of its options that were chosen, and whether the price is within
    the limit (all of them counted together), or 0 for a product of another category. Success
    is reward 1: any product meeting the instruction counts, not only the one it was made from.
    ``StepResult.info["purchase"]`` holds the product (``asin``), the options chosen (``chosen``),
    the ``reward`` and its parts: ``category`` (the right one), how many of the requested
    ``attributes`` and ``options`` matched, and ``price`` (within the limit).

    Milestones: ``match_listed``, ``match_opened``, ``options_chosen``, ``purchased`` (see
    :data:`MILESTONES`). The state key is the page: a results page's query and number, or a product
    page's product, tab and chosen options (not the search that led there).
    Plain text works as an action too: ``search[red mug]``, ``click[Buy Now]``, ``click: Next >``.

    Needs Playwright (``pip install 'agentgym[web]'``) and Chromium at ``/usr/bin/chromium``
    (``apt-get install -y chromium``; ``$AGENTGYM_CHROMIUM`` names another). Episodes share one
    Chromium per process; an episode's tab is given back when it ends and a later episode takes it
    (cookies cleared: the shop keeps its state in addresses, not in the browser), unless an action of
    the episode was cut short or failed (its navigation may still land). No snapshots: the
    state lives in the browser.

    Args:
        catalog: a JSONL file of products (gzipped if named ``.gz``); default: the shipped catalog
            (``agentgym.tasks.webshop``, made by its generator).
    """

    def __init__(self, *, catalog: str | Path | None = None) -> None:
        super().__init__()
        self.catalog_path = (Path(catalog) if catalog is not None
                             else Path(webshop_tasks.__file__).parent / webshop_tasks.CATALOG)
        self.catalog = load_catalog(self.catalog_path)
        self._page: BrowserPage | None = None
        self.view = PageView(url="", title="", text="", clickables=())
        self.place = Place("home")
        self.goal: dict[str, Any] = {}

    async def reset(self, task: Task) -> str:
        self.goal = check_goal(task)
        home = (await shop_server(self.catalog_path)).url + "/"
        try:
            if self._page is not None and not self._page.reusable:  # an action cut short: its navigation may land
                old, self._page = self._page, None
                await old.aclose()
            if self._page is None:
                self._page = await BrowserPage.open(reuse=True)
            await self._page.run(lambda page: page.goto(home))
        except Exception:  # noqa: BLE001 - the tab or Chromium died since the last episode: start a new tab
            old, self._page = self._page, None
            if old is not None:
                await old.aclose()
            self._page = await BrowserPage.open(reuse=True)
            await self._page.run(lambda page: page.goto(home))
        first = await self._look()
        return (f"Instruction: {task.prompt}\n\n{first}\n\nTools: search(query) types a query into the search box "
                "(on the home page) and searches; click(element) clicks a link or button by its label, as shown "
                "in brackets. Buying ends the episode.")

    async def _look(self) -> str:
        """Read the page the browser shows, note where it is, and report the milestones it reaches."""
        assert self._page is not None
        self.view = await self._page.read()
        self.place = place = place_of(self.view.url, self.catalog.by_asin)
        products = self.catalog.by_asin
        if place.kind == "results" and any(meets(self.goal, p) for p in self._listed()):
            self.reach("match_listed")
        if place.kind == "item" and meets(self.goal, products[place.asin]):
            self.reach("match_opened")
            if all(place.chosen.get(k) == v for k, v in self.goal["options"].items()):
                self.reach("options_chosen")
        return self.view.text

    def _listed(self) -> list[Product]:
        """The products the results page links to."""
        found = (self.catalog.index.page(label) for label in self.view.clickables)
        return [self.catalog.by_asin[dict(p.meta)["asin"]] for p in found if p is not None]

    # ----- tools -----------------------------------------------------------------------------
    @tool
    async def search(self, query: str) -> str:
        """Type a query into the shop's search box and search (the home page has the box).

        Args:
            query: What to look for, e.g. words from the instruction.
        """
        if not query.strip():
            raise InvalidActionError("The query is empty: pass the words to look for in 'query'.")
        if self.place.kind != "home":
            raise InvalidActionError("There is no search box on this page: click [Back to Search] first.")
        assert self._page is not None

        async def submit(page: Any) -> None:
            box = page.locator('input[name="q"]')
            await box.fill(query.strip())
            await box.press("Enter")
            await page.wait_for_url("**/search?**")
            await page.wait_for_load_state()

        await self._page.run(submit)
        return await self._look()

    @tool
    async def click(self, element: str) -> str:
        """Click a link or button by its label, as the page shows it in brackets (e.g. Buy Now, Next >, a product title).

        Args:
            element: The label, without the brackets.
        """
        label = element.strip().strip("[]").strip()
        assert self._page is not None
        if self.place.kind == "home" and label.lower() in ("search", "search box"):  # typing is search()'s
            raise InvalidActionError("The search box is empty: type the query and search in one action, "
                                     "search(query).")
        if not label or not await self._page.click(label):
            shown = ", ".join(f"[{c}]" for c in self.view.clickables) or "nothing"
            raise InvalidActionError(f"There is no [{label}] to click on this page. You can click: {shown}.")
        text = await self._look()
        if self.place.kind == "done":
            product = self.catalog.by_asin[self.place.asin]
            parts = score(self.goal, product, self.place.chosen)
            if parts["reward"] == 1.0:
                self.reach("purchased")
            self.add_info(purchase={"asin": product.asin, "chosen": dict(self.place.chosen), **parts})
            self.finish(reward=parts["reward"], success=parts["reward"] == 1.0)
        return text

    def on_text(self, text: str) -> ToolCall | None:
        """``search[red mug]``, ``click[Buy Now]``, ``click: Next >`` or ``Action: click(Buy Now)`` (the first line)."""
        return keyword_action(text, {"search": "query", "click": "element"})

    # ----- state -----------------------------------------------------------------------------
    def state_key(self) -> str:
        """The page: home, a results page (query and number), or a product page (product, tab, chosen options)."""
        return self.place.key()

    # ----- scripted policies ------------------------------------------------------------------
    def expert_action(self) -> ToolCall:
        """Search the instruction's attributes and category, open the first listed product that has them at the
        price and offers the options asked for (paging on), choose the options, buy. (Every shipped task has such
        a product in its results; for a task without one the expert fails.)"""
        place, clickables, goal = self.place, self.view.clickables, self.goal

        def click(label: str) -> ToolCall:
            return ToolCall(name="click", arguments={"element": label})

        if place.kind == "home":
            return ToolCall(name="search", arguments={"query": expert_query(goal)})
        if place.kind == "results":
            fit = next((p for p in self._listed() if fits(goal, p)), None)
            if fit is not None:
                return click(fit.title)
            return click("Next >" if "Next >" in clickables else "Back to Search")
        if place.kind == "item" and not place.tab and fits(goal, self.catalog.by_asin[place.asin]):
            for name, value in goal["options"].items():
                if place.chosen.get(name) != value:
                    return click(value)
            return click("Buy Now")
        return click("< Prev" if "< Prev" in clickables else "Back to Search")

    def random_action(self, rng: random.Random) -> ToolCall:
        """On the home page, search two words of the instruction; elsewhere click anything on the page."""
        if self.place.kind == "home" or not self.view.clickables:
            words = re.findall(r"[a-z][a-z-]+", self.task.prompt.lower()) or ["shirt"]
            return ToolCall(name="search", arguments={"query": " ".join(rng.sample(words, min(2, len(words))))})
        return ToolCall(name="click", arguments={"element": rng.choice(self.view.clickables)})

    async def aclose(self) -> None:
        page, self._page = self._page, None
        try:
            if page is not None:
                await page.aclose()
        finally:
            await super().aclose()
