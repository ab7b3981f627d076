"""The web shop's HTTP server (aiohttp): plain HTML pages that a real browser renders.

    /                                  home: a search box
    /search?q=QUERY&page=N             results, ``PER_PAGE`` a page, at most ``MAX_RESULTS`` in all
    /item/ASIN?q=..&page=..&color=..   a product: options to choose, Description, Features, Buy Now
    /item/ASIN/description?...         (and /features) more about it
    /done/ASIN?color=..&size=..        the purchase, with the options chosen

The server keeps no session: where the shopper is and what they chose lives in the address,
so any page can be reached again from its URL. One server per catalog runs on 127.0.0.1 (a free
port) on the browser thread of :mod:`agentgym.tools.browser`, shared by every episode of the process.
"""

from __future__ import annotations

import asyncio
import html
import math
import threading
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from agentgym.environments.webshop.shop import Catalog, Product, load_catalog
from agentgym.tools.browser import at_shutdown, browser_loop, serve_in_browser_thread

MAX_RESULTS = 50
PER_PAGE = 10
_STYLE = ("body{font-family:sans-serif;max-width:48rem;margin:1rem auto}a{margin-right:.6rem}"
          "a[aria-current=true]{font-weight:bold;border:1px solid}li{margin:.3rem 0}.buy{font-size:1.2rem}")


def _page(title: str, *body: str) -> web.Response:
    return web.Response(text=f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
                             f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>",
                        content_type="text/html")


def _link(label: str, href: str, *, current: bool = False, cls: str = "") -> str:
    extra = ' aria-current="true"' if current else ""
    extra += f' class="{cls}"' if cls else ""
    return f'<a href="{html.escape(href)}"{extra}>{html.escape(label)}</a>'


def _query(**params: object) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else ""


class ShopSite:
    """The pages of one catalog (the aiohttp application)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.app = web.Application()
        self.app.router.add_get("/", self.home)
        self.app.router.add_get("/search", self.results)
        self.app.router.add_get("/item/{asin}", self.item)
        self.app.router.add_get("/item/{asin}/{tab:description|features}", self.item_tab)
        self.app.router.add_get("/done/{asin}", self.done)

    def _product(self, request: web.Request) -> Product:
        product = self.catalog.by_asin.get(request.match_info["asin"])
        if product is None:
            raise web.HTTPNotFound(text=f"no product {request.match_info['asin']}")
        return product

    @staticmethod
    def _chosen(request: web.Request, product: Product) -> dict[str, str]:
        return {name: request.query[name] for name in product.options if request.query.get(name) in product.options[name]}

    async def home(self, request: web.Request) -> web.Response:
        return _page("WebShop", "<h1>WebShop</h1>",
                     '<form action="/search" method="get"><input type="search" name="q" aria-label="Search" required> '
                     '<button type="submit">Search</button></form>')

    async def results(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "").strip()
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            page = 1
        found = self.catalog.search(query, MAX_RESULTS) if query else []
        pages = max(1, math.ceil(len(found) / PER_PAGE))
        page = min(page, pages)
        shown = found[(page - 1) * PER_PAGE:page * PER_PAGE]
        nav = [_link("Back to Search", "/")]
        if page > 1:
            nav.append(_link("< Prev", "/search" + _query(q=query, page=page - 1)))
        if page < pages:
            nav.append(_link("Next >", "/search" + _query(q=query, page=page + 1)))
        items = "".join(f"<li>{_link(p.title, f'/item/{p.asin}' + _query(q=query, page=page))} ${p.price:.2f}</li>"
                        for p in shown)
        return _page(f"Results for {query}", f"<div>{' '.join(nav)}</div>",
                     f"<p>Page {page} of {pages} (total results: {len(found)})</p>",
                     f"<ul>{items}</ul>" if items else "<p>No products match your search.</p>")

    async def item(self, request: web.Request) -> web.Response:
        product = self._product(request)
        chosen = self._chosen(request, product)
        back = {"q": request.query.get("q", ""), "page": request.query.get("page", "")}
        here = f"/item/{product.asin}"
        groups = []
        for name, values in product.options.items():
            links = " ".join(_link(v, here + _query(**back, **{**chosen, name: v}), current=chosen.get(name) == v)
                             for v in values)
            groups.append(f"<div>{html.escape(name)}: {links}</div>")
        tabs = " ".join(_link(label, f"{here}/{label.lower()}" + _query(**back, **chosen))
                        for label in ("Description", "Features"))
        return _page(product.title,
                     f"<div>{_link('Back to Search', '/')} {_link('< Prev', '/search' + _query(**back))}</div>",
                     f"<h2>{html.escape(product.title)}</h2>",
                     f"<p>Price: ${product.price:.2f}</p><p>Rating: {product.rating:.1f} out of 5</p>",
                     *groups, f"<div>{tabs}</div>",
                     f"<div>{_link('Buy Now', f'/done/{product.asin}' + _query(**chosen), cls='buy')}</div>")

    async def item_tab(self, request: web.Request) -> web.Response:
        product = self._product(request)
        keep = {k: v for k, v in request.query.items() if k in ("q", "page") or k in product.options}
        if request.match_info["tab"] == "description":
            body = f"<p>{html.escape(product.description)}</p>"
        else:
            body = "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in product.features) + "</ul>"
        return _page(product.title, f"<div>{_link('Back to Search', '/')} "
                                    f"{_link('< Prev', f'/item/{product.asin}' + _query(**keep))}</div>",
                     f"<h2>{html.escape(product.title)}</h2>", body)

    async def done(self, request: web.Request) -> web.Response:
        product = self._product(request)
        chosen = self._chosen(request, product)
        options = ", ".join(f"{k}: {v}" for k, v in chosen.items()) or "none chosen"
        return _page("Thank you", "<h1>Thank you for shopping with us!</h1>",
                     f"<p>You bought {html.escape(product.title)} for ${product.price:.2f} "
                     f"(options: {html.escape(options)}).</p>")


class ShopServer:
    """A running :class:`ShopSite` on 127.0.0.1; ``url`` is its address."""

    def __init__(self, site: ShopSite, runner: web.AppRunner, url: str) -> None:
        self.site, self._runner, self.url = site, runner, url

    @classmethod
    async def start(cls, catalog: Catalog, host: str = "127.0.0.1", port: int = 0) -> "ShopServer":
        """Serve ``catalog`` on the running loop; port 0 takes a free one."""
        site = ShopSite(catalog)
        runner = web.AppRunner(site.app, access_log=None)
        await runner.setup()
        tcp = web.TCPSite(runner, host, port)
        await tcp.start()
        bound = runner.addresses[0][1]
        return cls(site, runner, f"http://{host}:{bound}")

    async def stop(self) -> None:
        """Stop serving."""
        await self._runner.cleanup()


# servers by the browser thread's loop they run on (a new loop after browser.shutdown() or a fork) and catalog
_SERVERS: dict[tuple[asyncio.AbstractEventLoop, Path], ShopServer] = {}
_STARTING: dict[tuple[asyncio.AbstractEventLoop, Path], asyncio.Future] = {}
_LOCK = threading.Lock()


async def shop_server(catalog_path: str | Path) -> ShopServer:
    """The process's server of the catalog in ``catalog_path``, started on first use (on the browser thread)."""
    key = (browser_loop(), Path(catalog_path).resolve())
    with _LOCK:
        server = _SERVERS.get(key)
    if server is not None:
        return server

    async def start() -> ShopServer:  # on the browser thread: one start at a time per catalog
        if key in _SERVERS:
            return _SERVERS[key]
        if key not in _STARTING:
            _STARTING[key] = asyncio.ensure_future(ShopServer.start(load_catalog(key[1])))
        try:
            server = await asyncio.shield(_STARTING[key])
        finally:
            if _STARTING.get(key) is not None and _STARTING[key].done():
                _STARTING.pop(key, None)
        with _LOCK:
            _SERVERS[key] = server
        return server

    return await serve_in_browser_thread(start)


async def _stop_servers() -> None:
    """Stop the servers of the browser thread's loop as it shuts down (their port would accept and never answer)."""
    loop = asyncio.get_running_loop()
    with _LOCK:
        servers = [_SERVERS.pop(key) for key in [k for k in _SERVERS if k[0] is loop]]
    for server in servers:
        await server.stop()


at_shutdown(_stop_servers)
