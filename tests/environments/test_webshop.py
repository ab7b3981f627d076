"""webshop-v0: the catalog and reward, the shop's HTTP pages, and episodes driven through real Chromium."""

import asyncio
import json
import random
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

import agentgym as ag
from agentgym.environments.webshop.env import WebShopEnv, check_goal, expert_query, place_of
from agentgym.environments.webshop.shop import fits, load_catalog, meets, score
from agentgym.environments.webshop.site import MAX_RESULTS, PER_PAGE, ShopServer
from agentgym.errors import ConfigError
from agentgym.rollout import RolloutRunner
from agentgym.tasks.webshop import CATALOG, generate
from agentgym.tools.browser import PageView
from agentgym.types import Task, ToolCall

SUITE_DIR = Path(generate.__file__).resolve().parent
SUITES = ("train", "test-seen", "test-unseen")
CATALOG_ = load_catalog(SUITE_DIR / CATALOG)


def _kind(task: Task) -> str:
    return f"{task.data['goal']['category']}|{'|'.join(task.data['goal']['attributes'])}"


# ----- catalog, suites and reward (no browser) -------------------------------------------------
def test_score_counts_attributes_options_and_price_and_zeroes_another_category():
    goal = {"category": "backpack", "attributes": ["waterproof", "anti theft"], "options": {"color": "black",
            "capacity": "30 l"}, "price_max": 60.0}
    product = next(p for p in CATALOG_.products if p.category == "backpack" and "waterproof" in p.attributes
                   and "anti theft" not in p.attributes and p.price <= 60)
    parts = score(goal, product, {"color": "black", "capacity": "20 l"})
    assert parts == {"reward": round(3 / 5, 4), "category": True, "attributes": 1, "options": 1, "price": True}
    assert not meets(goal, product)
    mug = next(p for p in CATALOG_.products if p.category == "coffee mug")
    assert score(goal, mug, {"color": "black", "capacity": "30 l"})["reward"] == 0.0


def _fit_page(task: Task) -> int | None:
    """The results page on which the expert's search lists a product that can earn full reward."""
    found = CATALOG_.search(expert_query(task.data["goal"]), MAX_RESULTS)
    return next((i // PER_PAGE + 1 for i, p in enumerate(found) if fits(task.data["goal"], p)), None)


def test_every_task_is_met_by_its_product_and_the_expert_search_lists_a_fitting_one():
    for suite in SUITES:
        for task in ag.load_tasks("webshop-v0", suite):
            product = CATALOG_.by_asin[task.data["asin"]]
            goal = task.data["goal"]
            assert fits(goal, product) and score(goal, product, goal["options"])["reward"] == 1.0, task.id
            assert _fit_page(task) is not None, task.id  # what the expert relies on


def test_held_out_kinds_are_only_in_test_unseen_and_test_seen_asks_for_train_kinds():
    kinds = {s: {_kind(t) for t in ag.load_tasks("webshop-v0", s)} for s in SUITES}
    assert all(generate.held_out(k) for k in kinds["test-unseen"])
    assert not any(generate.held_out(k) for k in kinds["train"] | kinds["test-seen"])
    assert kinds["test-seen"] <= kinds["train"]
    prompts = {s: {t.prompt for t in ag.load_tasks("webshop-v0", s)} for s in SUITES}
    assert not prompts["train"] & prompts["test-seen"] and not prompts["train"] & prompts["test-unseen"]
    first = [t.data["goal"]["category"] for t in ag.load_tasks("webshop-v0", "test-seen")[:12]]
    assert len(set(first)) == 12  # categories take turns: a small eval sees every one
    splits = Counter(t.split for s in SUITES for t in ag.load_tasks("webshop-v0", s))
    assert splits == {"train": 1500, "test": 400}


def test_the_committed_catalog_and_suites_are_what_the_generator_makes(tmp_path):
    assert generate.main(["--check", "--out", str(SUITE_DIR)]) == 0
    assert generate.main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / CATALOG).read_bytes() == (SUITE_DIR / CATALOG).read_bytes()
    (tmp_path / "train.jsonl").write_text("")
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1


def test_place_of_reads_the_page_from_its_address():
    product = CATALOG_.products[0]
    color = product.options["color"][0]
    base = "http://127.0.0.1:9/"
    assert place_of(base, CATALOG_.by_asin).key() == "home"
    assert place_of(base + "search?q=Red++Mug&page=2", CATALOG_.by_asin).key() == "results|red mug|2"
    item = place_of(f"{base}item/{product.asin}?q=x&page=1&color={color}&bogus=1&size=nope", CATALOG_.by_asin)
    assert (item.kind, item.asin, item.chosen, item.tab) == ("item", product.asin, {"color": color}, "")
    assert place_of(f"{base}item/{product.asin}/features", CATALOG_.by_asin).tab == "features"
    assert place_of(f"{base}item/NOPE", CATALOG_.by_asin).kind == "other"


def test_plain_text_actions_are_search_and_click():
    env = WebShopEnv()
    assert env.on_text("search[red mug]") == ToolCall(name="search", arguments={"query": "red mug"})
    assert env.on_text("Action: click(Next >)") == ToolCall(name="click", arguments={"element": "Next >"})


def test_other_text_is_not_an_action_and_a_missing_catalog_is_a_config_error(tmp_path):
    assert WebShopEnv().on_text("I would buy it") is None
    with pytest.raises(ConfigError, match="no web shop catalog"):
        WebShopEnv(catalog=tmp_path / "none.jsonl")


# ----- the HTTP server (no browser) ------------------------------------------------------------
async def test_the_server_pages_results_and_keeps_choices_in_the_address():
    server = await ShopServer.start(CATALOG_)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/search", params={"q": "waterproof backpack", "page": "2"}) as r:
                page = await r.text()
            assert r.status == 200 and f"Page 2 of {MAX_RESULTS // PER_PAGE}" in page and "Next &gt;" in page
            backpack = next(p for p in CATALOG_.products if p.category == "backpack")
            size = backpack.options["capacity"][-1]
            async with http.get(f"{server.url}/item/{backpack.asin}", params={"capacity": size, "color": "nope"}) as r:
                page = await r.text()
            assert page.count('aria-current="true"') == 1 and f'/done/{backpack.asin}?capacity=' in page
            async with http.get(server.url + "/item/B0NOTHING") as r:
                assert r.status == 404
            async with http.get(server.url + "/search", params={"q": "zzzz"}) as r:
                assert "No products match" in await r.text()
    finally:
        await server.stop()


# ----- episodes in Chromium ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser_available():
    pytest.importorskip("playwright.async_api", reason="webshop-v0 needs playwright (pip install 'agentgym[web]')")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install -y chromium)")


@pytest.fixture
async def env(browser_available):
    async with ag.make("webshop-v0") as e:
        yield e


def _task(suite: str = "test-seen", index: int = 0) -> Task:
    return ag.load_tasks("webshop-v0", suite)[index]


async def test_the_expert_buys_what_every_category_asks_for_through_the_runner(browser_available):
    paging = [t for t in ag.load_tasks("webshop-v0", "test-unseen") if _fit_page(t) > 1][:4]  # it must click Next >
    assert len(paging) == 4
    tasks = ag.load_tasks("webshop-v0", "test-seen")[:12] + ag.load_tasks("webshop-v0", "test-unseen")[:8] + paging
    result = await RolloutRunner("expert", concurrency=8).run(tasks)
    assert result.summary()["success_rate"] == 1.0 and result.summary()["failed"] == 0
    for traj in result.trajectories:
        reached = [m for s in traj.steps for m in s.result.milestones]
        assert reached == ["match_listed", "match_opened", "options_chosen", "purchased"]
        assert traj.steps[-1].result.info["purchase"]["reward"] == 1.0 and traj.reward == 1.0
    assert all(any(s.response.find("Next >") > 0 for s in t.steps) for t in result.trajectories[-4:])


async def test_buying_without_the_options_pays_part_and_reports_the_parts(env):
    task = _task()
    goal = task.data["goal"]
    target = CATALOG_.by_asin[task.data["asin"]]
    first = await env.reset(task)
    assert task.prompt in first and "[Search box]" in first
    results = await env.step(ToolCall(name="search", arguments={"query": target.title}))
    assert results.valid and f"[{target.title}]" in results.observation and results.milestones == ["match_listed"]
    item = await env.step(f"click[{target.title}]")
    assert "[Buy Now]" in item.observation and item.milestones == ["match_opened"]
    bought = await env.step("click[buy now]")  # labels match whatever their case
    parts = bought.info["purchase"]
    expected = (len(goal["attributes"]) + 1) / (len(goal["attributes"]) + len(goal["options"]) + 1)
    assert bought.terminated and not env.success and bought.reward == pytest.approx(expected, abs=1e-4)
    assert parts["options"] == 0 and parts["price"] and "Thank you" in bought.observation
    assert parts["asin"] == target.asin and parts["chosen"] == {}  # bought without choosing its options


async def test_a_product_of_another_category_pays_nothing(env):
    task = _task()
    other = next(p for p in CATALOG_.products if p.category != task.data["goal"]["category"])
    await env.reset(task)
    await env.step(ToolCall(name="search", arguments={"query": other.title}))
    await env.step(ToolCall(name="click", arguments={"element": other.title}))
    bought = await env.step(ToolCall(name="click", arguments={"element": "Buy Now"}))
    assert bought.terminated and bought.reward == 0.0 and bought.info["purchase"]["category"] is False


async def test_bad_actions_are_invalid_and_say_what_can_be_clicked(env):
    await env.reset(_task())
    missing = await env.step(ToolCall(name="click", arguments={"element": "Checkout"}))
    assert not missing.valid and "[Search]" in missing.observation and "no [Checkout]" in missing.observation
    await env.step(ToolCall(name="search", arguments={"query": "ceramic mug"}))
    elsewhere = await env.step(ToolCall(name="search", arguments={"query": "mug"}))
    assert not elsewhere.valid and "[Back to Search]" in elsewhere.observation
    empty = await env.step(ToolCall(name="search", arguments={"query": "  "}))
    assert not empty.valid and not env.done


async def test_the_same_page_gives_the_same_state_key_and_options_change_it(env):
    task = _task()
    target = CATALOG_.by_asin[task.data["asin"]]
    await env.reset(task)
    assert env.state_key() == "home"
    await env.step(ToolCall(name="search", arguments={"query": target.title}))
    results = env.state_key()
    await env.step(ToolCall(name="click", arguments={"element": target.title}))
    item = env.state_key()
    await env.step(ToolCall(name="click", arguments={"element": "Description"}))
    assert env.state_key() != item and "description" in env.state_key()
    await env.step(ToolCall(name="click", arguments={"element": "< Prev"}))
    assert env.state_key() == item
    color = task.data["goal"]["options"]["color"]
    chosen = await env.step(ToolCall(name="click", arguments={"element": color}))
    assert env.state_key() != item and f"[{color}] (selected)" in chosen.observation
    await env.step(ToolCall(name="click", arguments={"element": "< Prev"}))
    assert env.state_key() == results


async def test_random_actions_run_and_an_episode_ends_within_its_turns(browser_available):
    tasks = ag.load_tasks("webshop-v0", "test-unseen")[:4]
    result = await RolloutRunner("random", concurrency=4).run(tasks)
    assert result.summary()["failed"] == 0
    for traj in result.trajectories:
        assert 1 <= traj.num_turns <= tasks[0].max_turns and (traj.terminated or traj.truncated)


async def test_concurrent_episodes_have_separate_browser_state(browser_available):
    one, two = _task("test-seen", 0), _task("test-seen", 1)
    async with ag.make("webshop-v0") as a, ag.make("webshop-v0") as b:
        await asyncio.gather(a.reset(one), b.reset(two))
        await a.step(ToolCall(name="search", arguments={"query": "ceramic mug"}))
        assert a.state_key().startswith("results|") and b.state_key() == "home"
        await b.step(ToolCall(name="search", arguments={"query": "yoga mat"}))
        assert a.state_key() == "results|ceramic mug|1" and b.state_key() == "results|yoga mat|1"
        cookie = {"name": "cart", "value": "1", "url": a.view.url}
        await a._page.run(lambda page: page.context.add_cookies([cookie]))  # tabs are reused, never shared
        assert await b._page.run(lambda page: page.context.cookies()) == []


async def test_a_task_without_a_goal_is_refused(env):
    with pytest.raises(ConfigError, match="data\\['goal'\\]"):
        await env.reset(Task(id="x", env="webshop-v0", prompt="buy something", data={}))


async def test_reset_starts_over_from_the_home_page_even_after_its_tab_died(env):
    task = _task()
    await env.reset(task)
    await env.step(ToolCall(name="search", arguments={"query": "mug"}))
    again = await env.reset(task)
    assert env.state_key() == "home" and "[Search box]" in again and env.reached == []
    await env._page.run(lambda page: page.context.close())  # as when Chromium kills a tab
    with pytest.raises(Exception, match="closed"):
        await env.step(ToolCall(name="search", arguments={"query": "mug"}))
    assert "[Search box]" in await env.reset(task)
    assert (await env.step(ToolCall(name="search", arguments={"query": "mug"}))).valid


def test_random_actions_search_on_the_home_page_and_click_what_a_page_shows():
    env = WebShopEnv()
    env.task, env.place = _task(), place_of("http://h/", CATALOG_.by_asin)
    assert env.random_action(random.Random(0)).name == "search"
    env.place = place_of("http://h/search?q=mug", CATALOG_.by_asin)
    env.view = PageView(url="http://h/search?q=mug", title="", text="", clickables=("Back to Search", "Next >"))
    clicks = {env.random_action(random.Random(seed)).arguments["element"] for seed in range(20)}
    assert clicks == {"Back to Search", "Next >"}


async def test_a_step_cut_short_leaves_its_tab_out_of_the_next_episode(env):
    await env.reset(_task())
    tab = env._page
    with pytest.raises(asyncio.TimeoutError):  # a step time limit: the search may still navigate the tab
        await asyncio.wait_for(env.step(ToolCall(name="search", arguments={"query": "leaky earlier query"})), 0.001)
    first = await env.reset(_task(index=1))  # the same environment, as the Gymnasium adapter resets it
    assert env._page is not tab and "[Search box]" in first
    await asyncio.sleep(0.5)
    assert env.place.kind == "home" and "leaky" not in (await env._page.read()).url


async def test_clicking_search_or_its_box_is_invalid_and_says_how_to_search(env):
    await env.reset(_task())
    for label in ("Search", "Search box"):  # both show in brackets on the home page
        step = await env.step(f"click[{label}]")
        assert not step.valid and "search(query)" in step.observation and env.state_key() == "home"


async def test_clicking_the_selected_option_again_reloads_the_same_page(env):
    task = _task()
    target = CATALOG_.by_asin[task.data["asin"]]
    color = task.data["goal"]["options"]["color"]
    await env.reset(task)
    await env.step(ToolCall(name="search", arguments={"query": target.title}))
    await env.step(ToolCall(name="click", arguments={"element": target.title}))
    first = await env.step(ToolCall(name="click", arguments={"element": color}))
    key = env.state_key()
    for _ in range(3):  # the link of a selected option is the page's own address
        again = await env.step(ToolCall(name="click", arguments={"element": color}))
        assert again.valid and env.state_key() == key and again.observation == first.observation


async def test_an_episode_runs_after_the_browser_was_shut_down(browser_available):
    from agentgym.tools import browser

    async with ag.make("webshop-v0") as env:
        await env.reset(_task())
    browser.shutdown()  # Chromium and the shop's server stop; the next episode starts both again
    async with ag.make("webshop-v0") as env:
        await env.reset(_task())
        assert (await env.step(ToolCall(name="search", arguments={"query": "mug"}))).valid


@pytest.mark.parametrize("goal", [
    {"category": "mug", "attributes": "ceramic", "options": {}, "price_max": 10},
    {"category": "mug", "attributes": [], "options": [["color", "red"]], "price_max": 10},
    {"category": "mug", "attributes": [], "options": {}, "price_max": "10"},
])
def test_a_goal_of_the_wrong_types_is_refused(goal):
    with pytest.raises(ConfigError, match="a list of strings"):
        check_goal(Task(id="x", env="webshop-v0", prompt="buy", data={"goal": goal}))


@pytest.mark.parametrize("change, problem", [
    ({"asin": "B0/../x"}, "letters, digits"),
    ({"options": {"q": ["a"]}}, "not be named 'q'"),
    ({"attributes": "waterproof"}, "list of strings"),
])
def test_a_bad_catalog_line_is_refused(tmp_path, change, problem):
    product = {"asin": "B01", "title": "T", "category": "mug", "brand": "B", "price": 1.0, "rating": 4.0,
               "attributes": ["ceramic"], "options": {"color": ["red"]}, "description": "d", "features": []}
    path = tmp_path / "catalog.jsonl"
    path.write_text(json.dumps({**product, **change}) + "\n")
    with pytest.raises(ConfigError, match=problem):
        load_catalog(path)
