"""A real headless Chromium for environments that act through a browser (Playwright).

    page = await BrowserPage.open()                     # a page in a fresh browser context
    await page.run(lambda p: p.goto("http://127.0.0.1:8080/"))
    view = await page.read()                            # PageView: url, text, clickable labels
    await page.click("Buy Now")                         # a real click on the link or button so named
    await page.aclose()

One background thread per process runs an event loop with Playwright and one Chromium, launched
from ``/usr/bin/chromium`` (or ``$AGENTGYM_CHROMIUM``), never a downloaded browser. Every
:class:`BrowserPage` has its own browser context (no shared cookies, storage or history; a page opened
with ``reuse=True`` may be one an earlier user gave back, cookies cleared, unless an action on it was
cut short or failed), and its
methods may be awaited from any event loop: the rollout runner's, the gym adapter's, a test's.
Chromium is started on first use, started again if it dies, and closed when the process exits.
:func:`serve_in_browser_thread` runs a server (e.g. aiohttp) on the same loop.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from agentgym.errors import ConfigError

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
               "--disable-dev-shm-usage"]
IDLE_PAGES = 64  # pages kept for reuse (BrowserPage.open(reuse=True)); each holds a renderer process
ACTION_TIMEOUT_MS = 15_000  # one click or navigation of a local page; far above the 0.06-0.3 s they take

# Both scripts below judge visibility alike: an element with a box, not hidden by CSS.
_SHOWN = r"""const shown = (el) => getComputedStyle(el).display === "contents"
  || el.checkVisibility({visibilityProperty: true});"""

# The page as text: links and buttons as [label], pressed or current ones marked "(selected)",
# text boxes as [label box]; block elements on their own lines. Hidden elements are left out.
_READ_PAGE = r"""() => {
  %s
  if (!document.body) return {url: location.href, title: document.title, text: "", clickables: []};
  const blocks = new Set(["P","DIV","LI","UL","OL","H1","H2","H3","H4","FORM","SECTION","HEADER","FOOTER","TR",
                          "TABLE","MAIN","NAV","ARTICLE","BR"]);
  const out = [], clickables = [];
  const label = (el) => (el.getAttribute("aria-label") || el.innerText || el.value || "").replace(/\s+/g, " ").trim();
  const walk = (node) => {
    if (node.nodeType === Node.TEXT_NODE) { const t = node.textContent.replace(/\s+/g, " "); if (t.trim()) out.push(t); return; }
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    const el = node;
    if (el.tagName === "SCRIPT" || el.tagName === "STYLE" || !shown(el)) return;
    if (el.tagName === "A" || el.tagName === "BUTTON") {
      const name = label(el);
      if (name) {
        const on = el.getAttribute("aria-pressed") === "true" || el.getAttribute("aria-current") === "true";
        out.push(" [" + name + "]" + (on ? " (selected)" : "") + " ");
        clickables.push(name);
      }
      return;
    }
    if (el.tagName === "INPUT" && ["text", "search"].includes(el.type)) {
      out.push(" [" + (el.getAttribute("aria-label") || el.placeholder || "text") + " box] "); return;
    }
    const block = blocks.has(el.tagName);
    if (block) out.push("\n");
    for (const child of el.childNodes) walk(child);
    if (block) out.push("\n");
  };
  walk(document.body);
  const text = out.join("").split("\n").map((l) => l.replace(/\s+/g, " ").trim()).filter(Boolean).join("\n");
  return {url: location.href, title: document.title, text, clickables};
}""" % _SHOWN

# Marks the first visible link or button whose label is the given one (case and spacing aside) and
# says whether clicking it loads a document: a link to an http(s) or file address in this tab (the
# same address too: it reloads), not to a #fragment of this page; a submit button of a form that
# passes its own validation. Else the click stays on this document.
_MARK = r"""(wanted) => {
  %s
  const norm = (s) => s.replace(/\s+/g, " ").trim().toLowerCase();
  const page = (url) => url.split("#")[0];
  for (const el of document.querySelectorAll("[data-agentgym-target]")) el.removeAttribute("data-agentgym-target");
  for (const el of document.querySelectorAll("a, button")) {
    const name = norm(el.getAttribute("aria-label") || el.innerText || el.value || "");
    if (name !== norm(wanted) || !shown(el)) continue;
    el.setAttribute("data-agentgym-target", "1");
    if (el.tagName === "BUTTON") {
      const submits = Boolean(el.form) && (el.type || "submit") === "submit" && el.form.checkValidity();
      return submits ? "navigates" : "stays";
    }
    const raw = el.getAttribute("href");
    if (raw === null || raw.startsWith("#") || ["_blank", "_new"].includes(el.target)) return "stays";
    if (!["http:", "https:", "file:"].includes(new URL(el.href).protocol)) return "stays";
    const fragment = page(el.href) === page(location.href) && el.href.includes("#");
    return fragment ? "stays" : "navigates";
  }
  return null;
}""" % _SHOWN


@dataclass(frozen=True)
class PageView:
    """What a page shows: its address, title, text (clickables as ``[label]``) and the clickable labels in order."""

    url: str
    title: str
    text: str
    clickables: tuple[str, ...]


@dataclass
class _Chromium:
    """What one browser loop started: Playwright's driver, Chromium, and the lock of a launch under way.
    A loop started after a shutdown gets its own, so the old loop's closing never touches the new one's."""

    playwright: Any = None
    browser: Any = None
    launching: asyncio.Lock | None = None


class _BrowserThread:
    """The process's browser thread: an event loop running Playwright, one Chromium, and any servers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._chromium: dict[asyncio.AbstractEventLoop, _Chromium] = {}  # per loop; read on that loop's thread
        self.at_shutdown: list[Callable[[], Awaitable[None]]] = []  # run on the loop before Chromium closes
        self.idle: list[BrowserPage] = []  # pages given back for reuse; touched only on the browser thread

    def loop(self) -> asyncio.AbstractEventLoop:
        """The thread's loop, started on first use (and again after :meth:`shutdown`, or in a forked child)."""
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._chromium = {}
                self.idle = []
                ready = threading.Event()
                loop = asyncio.new_event_loop()
                loop.set_exception_handler(_quiet_dead_driver)

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name="agentgym-browser", daemon=True)
                self._thread.start()
                ready.wait()
                self._chromium[loop] = _Chromium()
                self._loop = loop
            return self._loop

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` on the browser thread and await its result here; cancelling here cancels it there."""
        loop = self.loop()
        if asyncio.get_running_loop() is loop:  # a server on the browser thread calling in
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), loop))  # type: ignore[arg-type]

    def _here(self) -> _Chromium:
        """The Chromium state of the loop running this code (the browser thread's)."""
        chromium = self._chromium.get(asyncio.get_running_loop())
        if chromium is None:
            raise RuntimeError("the browser thread is shutting down")
        return chromium

    async def browser(self) -> Any:
        """The shared Chromium (on the browser thread), launched when missing or after it died."""
        chromium = self._here()
        if chromium.launching is None:
            chromium.launching = asyncio.Lock()
        async with chromium.launching:
            if chromium.browser is not None and chromium.browser.is_connected():
                return chromium.browser
            try:
                from playwright.async_api import async_playwright
            except ImportError as exc:
                raise ConfigError("a browser environment needs Playwright: pip install 'agentgym[web]'") from exc
            path = os.environ.get("AGENTGYM_CHROMIUM", CHROMIUM)
            if not os.path.exists(path):
                raise ConfigError(f"no Chromium at {path}: apt-get install -y chromium (or set AGENTGYM_CHROMIUM "
                                  "to a Chromium executable); agentgym never downloads a browser")
            for attempt in range(2):
                if chromium.playwright is None:
                    chromium.playwright = await async_playwright().start()
                try:
                    chromium.browser = await chromium.playwright.chromium.launch(executable_path=path, args=LAUNCH_ARGS)
                    return chromium.browser
                except Exception:
                    if attempt:
                        raise
                    dead, chromium.playwright = chromium.playwright, None  # its driver process died: start a new one
                    try:
                        await dead.stop()
                    except Exception:  # noqa: BLE001 - already gone
                        pass
            raise AssertionError("unreachable")

    @property
    def current_browser(self) -> Any:
        """The Chromium pages are opened in now (None before the first or after one failed)."""
        return self._here().browser

    def forget(self, browser: Any) -> None:
        """Launch a new Chromium next time: ``browser`` failed (on the browser thread)."""
        if self._here().browser is browser:
            self._here().browser = None

    def shutdown(self) -> None:
        """Stop the servers, close Chromium and Playwright, and stop the thread (at exit; later use starts anew)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or self._pid != os.getpid() or thread is None or not thread.is_alive():
                return
            self._loop = None
            chromium = self._chromium.pop(loop, _Chromium())  # this loop's; a restart starts its own
            self.idle = []

        async def close() -> None:
            for hook in self.at_shutdown:
                try:
                    await hook()
                except Exception:  # noqa: BLE001 - one server that will not stop must not keep Chromium open
                    pass
            if chromium.launching is not None:  # a Chromium still starting: let it start, then close it
                async with chromium.launching:
                    pass
            try:
                if chromium.browser is not None:
                    await chromium.browser.close()
            finally:
                if chromium.playwright is not None:
                    await chromium.playwright.stop()
            await _drain()

        try:
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=15)
        except Exception:  # noqa: BLE001 - a browser that will not close dies with the process
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()


async def _drain(timeout: float = 2.0) -> None:
    """Let the loop's other tasks finish (pages still opening when Chromium closed fail at once), then cancel
    what is left: a task the stopped loop dropped would print "Task was destroyed but it is pending!"."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        others = asyncio.all_tasks() - {asyncio.current_task()}
        left = deadline - asyncio.get_running_loop().time()
        if not others:
            return
        if left <= 0:
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            return
        await asyncio.wait(others, timeout=left)


_THREAD = _BrowserThread()
atexit.register(_THREAD.shutdown)


def shutdown() -> None:
    """Stop the servers on the browser thread and close the process's Chromium now (it happens at exit
    anyway; the next use starts them again)."""
    _THREAD.shutdown()


def browser_loop() -> asyncio.AbstractEventLoop:
    """The browser thread's event loop (started if need be): a server started there lives until it stops."""
    return _THREAD.loop()


def at_shutdown(hook: Callable[[], Awaitable[None]]) -> None:
    """Have :func:`shutdown` (and the process's exit) await ``hook()`` on the browser thread first, e.g. to stop
    a server running there."""
    _THREAD.at_shutdown.append(hook)


async def serve_in_browser_thread(start: Callable[[], Awaitable[T]]) -> T:
    """Run ``start()`` (which starts a server and returns it) on the browser thread's loop, where it then serves."""
    return await _THREAD.call(start)


class BrowserPage:
    """One tab of the shared Chromium in a browser context of its own; see the module docstring."""

    def __init__(self, context: Any, page: Any, *, reusable: bool = False) -> None:
        self._context, self._page = context, page
        self.reusable = reusable
        self.closed = False

    @classmethod
    async def open(cls, *, reuse: bool = False) -> "BrowserPage":
        """A new page in a new browser context; with ``reuse``, a page an earlier user gave back with
        :meth:`aclose` when there is one, its cookies cleared.

        Reuse spares Chromium a new context and renderer process per page (most of its CPU time in a
        short episode), but keeps the old page's history and web storage: it is for sites that keep no
        state in the browser, like the shop of ``webshop-v0``.
        """
        async def make() -> "BrowserPage":
            while reuse and _THREAD.idle:
                page = _THREAD.idle.pop()
                if page._page.is_closed() or page._context.browser is not _THREAD.current_browser:
                    continue  # its context or its Chromium is gone
                try:
                    await page._context.clear_cookies()
                except Exception:  # noqa: BLE001 - dead under us: take another
                    continue
                page.closed = False
                return page
            browser = await _THREAD.browser()
            try:
                context = await browser.new_context()
            except Exception:  # Chromium or its driver died unnoticed (is_connected() still said yes)
                _THREAD.forget(browser)
                context = await (await _THREAD.browser()).new_context()
            try:
                context.set_default_timeout(ACTION_TIMEOUT_MS)
                return cls(context, await context.new_page(), reusable=reuse)
            except BaseException:
                await _close_quietly(context)
                raise

        loop = _THREAD.loop()
        if asyncio.get_running_loop() is loop:
            return await make()
        # Not cancelled midway (a context Chromium made would be lost): a caller that gives up, e.g. at a
        # step time limit, leaves the opening to finish and the page to be closed on the browser thread.
        future = asyncio.run_coroutine_threadsafe(make(), loop)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            future.add_done_callback(lambda f: None if f.cancelled() or f.exception() is not None
                                     else asyncio.run_coroutine_threadsafe(f.result().aclose(), loop))
            raise

    async def run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``await fn(page)`` with the Playwright page, on the browser thread."""
        if self.closed:
            raise RuntimeError("this browser page is closed")

        async def on_thread() -> T:
            return await fn(self._page)

        try:
            return await _THREAD.call(on_thread)
        except BaseException:
            # cut short (a step time limit) or failed: a navigation it started may still land, so this tab
            # is never handed to another user (it once took the next episode to the last one's search)
            self.reusable = False
            raise

    async def read(self) -> PageView:
        """The current page, once loaded, as text and clickable labels."""
        async def read(page: Any) -> dict:
            await page.wait_for_load_state()
            return await page.evaluate(_READ_PAGE)

        data = await self.run(read)
        return PageView(url=data["url"], title=data["title"], text=data["text"], clickables=tuple(data["clickables"]))

    async def click(self, label: str) -> bool:
        """Click the visible link or button labelled ``label`` (case and spacing aside); when that loads a
        document, return once it has loaded. False when the page has no such element."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        async def click(page: Any) -> bool:
            effect = await page.evaluate(_MARK, label)
            if effect is None:
                return False
            target = page.locator("[data-agentgym-target]").first
            if effect != "navigates":
                await target.click()
                return True
            try:
                async with page.expect_navigation():
                    await target.click()
            except PlaywrightTimeout:  # a script kept the page (a router's preventDefault): it stays
                if page.is_closed():
                    raise
            return True

        return await self.run(click)

    async def aclose(self) -> None:
        """Close the page and its browser context, or, for a page opened with ``reuse``, keep it for the next
        such :meth:`open` (up to ``IDLE_PAGES``). The close goes on even if the caller is cancelled."""
        if self.closed:
            return
        self.closed = True

        async def close() -> None:
            if self.reusable and len(_THREAD.idle) < IDLE_PAGES and not self._page.is_closed():
                _THREAD.idle.append(self)
            else:
                await _close_quietly(self._context)

        loop = _THREAD.loop()
        if asyncio.get_running_loop() is loop:
            await close()
        else:
            await asyncio.shield(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(close(), loop)))


def _quiet_dead_driver(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The browser loop's exception handler: Playwright keeps a dead driver's error in a future only its
    start awaits, and asyncio reports it as never retrieved when it is collected. The death is handled
    (a new driver starts), so that report is noise; everything else goes to asyncio's default handler."""
    error = context.get("exception")
    if not ("future" in context and type(error) is Exception
            and str(error) == "Connection closed while reading from the driver"):
        loop.default_exception_handler(context)


async def _close_quietly(context: Any) -> None:
    try:
        await context.close()
    except Exception:  # noqa: BLE001 - the browser died or was closed already: nothing left to free
        pass
