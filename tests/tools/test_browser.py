"""The browser tool: one real Chromium per process, pages read as text, clicks by label, any event loop."""

import asyncio
import gc
import os
import signal
import threading
from pathlib import Path

import pytest

from agentgym.tools import browser

pytestmark = pytest.mark.skipif(not Path(browser.CHROMIUM).exists(), reason="no Chromium at /usr/bin/chromium")
pytest.importorskip("playwright.async_api", reason="the browser tool needs playwright (pip install 'agentgym[web]')")

HTML = """<h1>Shop</h1><p>Pick <a href="#one">One</a> or <button aria-pressed="true">Two</button>.</p>
<div style="display:none"><a href="#hidden">Hidden</a></div><input type="search" aria-label="Search">
<ul><li>first</li><li>second <a href="#third" aria-current="true">Third  item</a></li></ul>"""


async def _page_with(html: str) -> browser.BrowserPage:
    page = await browser.BrowserPage.open()
    await page.run(lambda p: p.set_content(html))
    return page


async def test_a_page_reads_as_text_with_what_can_be_clicked():
    page = await _page_with(HTML)
    try:
        view = await page.read()
        assert view.clickables == ("One", "Two", "Third item")  # the hidden link is not there
        assert view.text.splitlines() == ["Shop", "Pick [One] or [Two] (selected) .", "[Search box]", "first",
                                          "second [Third item] (selected)"]
    finally:
        await page.aclose()


async def test_click_finds_a_label_whatever_its_case_and_says_when_there_is_none():
    page = await _page_with(HTML)
    try:
        assert await page.click("third ITEM")
        assert (await page.read()).url.endswith("#third")
        assert not await page.click("Hidden") and not await page.click("Four")
    finally:
        await page.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await page.read()


async def test_a_click_that_loads_another_page_returns_once_it_has_loaded(tmp_path):
    (tmp_path / "second.html").write_text("<h1>Second page</h1>")
    (tmp_path / "first.html").write_text("<a href='second.html'>Go</a> <a href='data:text/html,x'>Data</a> "
                                         "<a href='first.html'>Again</a> <form action='second.html'><input "
                                         "name='q' required><button>Send</button></form>")
    page = await browser.BrowserPage.open()
    try:
        await page.run(lambda p: p.goto((tmp_path / "first.html").as_uri()))
        assert await page.click("Data")  # Chromium refuses to open a data: URL from a page: it stays
        assert await page.click("Send")  # the form's own validation stops it: the box is empty
        assert (await page.read()).url.endswith("first.html")
        for _ in range(3):  # a link to the page itself reloads it, and the page is read once loaded
            assert await page.click("Again") and (await page.read()).clickables[:1] == ("Go",)
        assert await page.click("Go")
        view = await page.read()
        assert view.text == "Second page" and view.url.endswith("second.html")
    finally:
        await page.aclose()


async def test_pages_have_separate_contexts():
    one, two = await browser.BrowserPage.open(), await browser.BrowserPage.open()
    try:
        await one.run(lambda p: p.context.add_cookies([{"name": "k", "value": "v", "url": "http://127.0.0.1/"}]))
        assert await two.run(lambda p: p.context.cookies()) == []
    finally:
        await one.aclose()
        await two.aclose()


def test_pages_work_from_successive_event_loops_and_after_a_shutdown():
    async def title() -> str:
        page = await _page_with("<title>T</title><p>x</p>")
        try:
            return (await page.read()).title
        finally:
            await page.aclose()

    assert asyncio.run(title()) == "T"
    assert asyncio.run(title()) == "T"
    browser.shutdown()  # Chromium closes; the next page starts it again
    assert asyncio.run(title()) == "T"


def test_a_missing_chromium_is_a_config_error_naming_the_fix(monkeypatch):
    monkeypatch.setenv("AGENTGYM_CHROMIUM", "/nonexistent/chromium")
    browser.shutdown()
    try:
        with pytest.raises(browser.ConfigError, match="apt-get install -y chromium"):
            asyncio.run(browser.BrowserPage.open())
    finally:
        monkeypatch.delenv("AGENTGYM_CHROMIUM")
        browser.shutdown()


async def test_a_cancelled_open_leaves_no_browser_context_behind():
    async def contexts(page: browser.BrowserPage) -> int:
        async def count(p) -> int:
            return len(p.context.browser.contexts)

        return await page.run(count)

    keep = await browser.BrowserPage.open()
    try:
        before = await contexts(keep)
        for delay in (0, 0.005, 0.02, 0.05, 0.1, 0.2):  # given up on at different points of the opening
            try:
                opened = await asyncio.wait_for(browser.BrowserPage.open(), delay)
            except asyncio.TimeoutError:
                continue
            await opened.aclose()
        for _ in range(100):  # a page made just as it was given up on is closed on the browser thread
            if await contexts(keep) == before:
                break
            await asyncio.sleep(0.05)
        assert await contexts(keep) == before
    finally:
        await keep.aclose()


async def test_a_page_given_back_is_reused_without_its_cookies_and_a_dead_one_is_not():
    first = await browser.BrowserPage.open(reuse=True)
    await first.run(lambda p: p.goto("data:text/html,<p>one</p>"))
    await first.run(lambda p: p.context.add_cookies([{"name": "k", "value": "v", "url": "http://127.0.0.1/"}]))
    await first.aclose()
    again = await browser.BrowserPage.open(reuse=True)
    try:
        assert again is first and not again.closed
        assert await again.run(lambda p: p.context.cookies()) == []
        other = await browser.BrowserPage.open()  # only reuse=True takes a page given back
        assert other is not again
        await other.aclose()
    finally:
        await again.run(lambda p: p.context.close())  # as when Chromium kills the tab
        await again.aclose()
    fresh = await browser.BrowserPage.open(reuse=True)
    try:
        assert fresh is not again and (await fresh.read()).url == "about:blank"
    finally:
        await fresh.aclose()


async def test_a_page_whose_action_was_cut_short_is_not_given_to_the_next_user():
    first = await browser.BrowserPage.open(reuse=True)
    await first.run(lambda p: p.goto("data:text/html,<p>one</p>"))
    with pytest.raises(asyncio.TimeoutError):  # a step time limit: a navigation it started may still land
        await asyncio.wait_for(first.run(lambda p: p.wait_for_timeout(5000)), 0.2)
    await first.aclose()
    second = await browser.BrowserPage.open(reuse=True)
    try:
        assert second is not first and (await second.read()).url == "about:blank"
    finally:
        await second.aclose()


async def test_a_page_opens_after_playwright_s_driver_process_died(caplog):
    page = await browser.BrowserPage.open()
    await page.aclose()
    drivers = [p for p in Path("/proc").glob("[0-9]*") if _parent(p) == os.getpid()
               and (p / "comm").read_text().startswith("node")]
    assert drivers  # Playwright's driver is a node process of ours; Chromium hangs off it
    for proc in drivers:
        os.kill(int(proc.name), signal.SIGKILL)
    for proc in drivers:
        while proc.exists() and (proc / "stat").read_text().split(") ")[1][0] != "Z":
            await asyncio.sleep(0.05)
    page = await browser.BrowserPage.open()  # Chromium went with it; both start again
    try:
        await page.run(lambda p: p.set_content("<p>back</p>"))
        assert (await page.read()).text == "back"
    finally:
        await page.aclose()
    # the dead driver's error, kept by Playwright in a future nobody awaits, is not reported as never retrieved
    gc.collect()  # a collected future with an unseen exception reports it (asyncio logs it) right then
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def _parent(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def test_shutdown_leaves_no_task_pending_on_the_browser_loop():
    # e.g. a page still opening while Chromium starts, its caller gone: a task the stopped loop dropped
    # printed "Task was destroyed but it is pending!" at exit
    started = threading.Event()

    async def waits_for_ever() -> None:
        started.set()
        await asyncio.Event().wait()

    pending = asyncio.run_coroutine_threadsafe(waits_for_ever(), browser.browser_loop())
    assert started.wait(10)
    browser.shutdown()
    assert pending.cancelled()
