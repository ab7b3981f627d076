"""The web shop's catalog, its search and the purchase reward (no browser, no server)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentgym.errors import ConfigError
from agentgym.tools.search import Page, SearchIndex


_ASIN = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Product:
    """One product of the catalog."""

    asin: str
    title: str
    category: str
    brand: str
    price: float
    rating: float
    attributes: tuple[str, ...]
    options: dict[str, tuple[str, ...]]  # option name (color, size, ...) -> the values offered
    description: str
    features: tuple[str, ...]


class Catalog:
    """Products by id and a BM25 index over their titles, categories, attributes, descriptions and features."""

    def __init__(self, products: list[Product]) -> None:
        if not products:
            raise ConfigError("a web shop catalog needs at least one product")
        for p in products:  # ids go into paths and option names into query strings beside the shop's own
            if not _ASIN.fullmatch(p.asin):
                raise ConfigError(f"product asin {p.asin!r} must be letters, digits, '-' or '_'")
            reserved = {"q", "page"} & set(p.options)
            if reserved or not all(p.options.values()):
                raise ConfigError(f"product {p.asin}: options must offer values and not be named 'q' or 'page' "
                                  f"(got {sorted(p.options)})")
        self.products = products
        self.by_asin = {p.asin: p for p in products}
        if len(self.by_asin) != len(products):
            raise ConfigError("two products of the catalog share an asin")
        self.index = SearchIndex([Page(p.title, " ".join([p.category, *p.attributes, p.description, *p.features]),
                                       (("asin", p.asin),)) for p in products])

    @classmethod
    def from_jsonl(cls, path: str | Path) -> "Catalog":
        """A catalog from a JSONL file of products (gzipped if it ends in ``.gz``), as the generator writes them."""
        from agentgym.tasks import read_jsonl

        products = []
        for number, row in read_jsonl(path, "a product"):
            try:
                products.append(Product(
                    asin=str(row["asin"]), title=str(row["title"]), category=str(row["category"]),
                    brand=str(row["brand"]), price=float(row["price"]), rating=float(row["rating"]),
                    attributes=_strings(row["attributes"]),
                    options={str(k): _strings(v) for k, v in row["options"].items()},
                    description=str(row["description"]), features=_strings(row["features"])))
            except (ValueError, KeyError, AttributeError, TypeError) as exc:
                raise ConfigError(f"{path}, line {number}: not a product ({type(exc).__name__}: {exc})") from None
        return cls(products)

    def search(self, query: str, k: int) -> list[Product]:
        """The ``k`` best products for ``query``, best first (an exact title first)."""
        return [self.by_asin[dict(h.page.meta)["asin"]] for h in self.index.search(query, k)]


def _strings(values: Any) -> tuple[str, ...]:
    """A JSON list of strings as a tuple; anything else (a bare string too) is an error."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TypeError(f"expected a list of strings, got {values!r}")
    return tuple(values)


_CATALOGS: dict[Path, Catalog] = {}
_LOCK = threading.Lock()


def load_catalog(path: str | Path) -> Catalog:
    """The catalog in ``path``, read once per process."""
    key = Path(path).resolve()
    with _LOCK:
        if key not in _CATALOGS:
            if not key.is_file():
                raise ConfigError(f"no web shop catalog at {key}")
            _CATALOGS[key] = Catalog.from_jsonl(key)
        return _CATALOGS[key]


def meets(goal: dict[str, Any], product: Product) -> bool:
    """Whether ``product`` is of the goal's category, has its attributes and costs at most its price."""
    return (product.category == goal["category"] and set(goal["attributes"]) <= set(product.attributes)
            and product.price <= goal["price_max"])


def fits(goal: dict[str, Any], product: Product) -> bool:
    """Whether buying ``product`` can earn full reward: it :func:`meets` the goal and offers the options it asks for."""
    return meets(goal, product) and all(value in product.options.get(name, ()) for name, value in goal["options"].items())


def score(goal: dict[str, Any], product: Product, chosen: dict[str, str]) -> dict[str, Any]:
    """The reward of buying ``product`` with the ``chosen`` options, and its parts.

    As in WebShop (Yao et al., 2022): the share of the goal's attributes the product has, of its
    options that were chosen, and whether the price is within the limit, counted together and
    multiplied by 1 when the product is of the goal's category, else 0.
    """
    attributes = sum(a in product.attributes for a in goal["attributes"])
    options = sum(chosen.get(name) == value for name, value in goal["options"].items())
    price = product.price <= goal["price_max"]
    total = len(goal["attributes"]) + len(goal["options"]) + 1
    same_category = product.category == goal["category"]
    reward = (attributes + options + price) / total if same_category else 0.0
    return {"reward": round(reward, 4), "category": same_category, "attributes": attributes,
            "options": options, "price": price}
