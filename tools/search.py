"""A BM25 search index over titled pages (``bm25s``), for environments that search a local corpus.

    index = SearchIndex.from_jsonl("pages.jsonl")      # {"title": ..., "text": ...} per line (or .jsonl.gz)
    index.search("capital of Peru", k=5)              # [Hit(page, score), ...], best first
    index.page("lima")                                # a page by title: case and accents ignored

Titles and texts are indexed together, folded to lowercase ASCII (so ``Brasilia`` finds
``Brasília``), with English stopwords removed. :func:`load_index` keeps one index per file in the
process: environments of many concurrent episodes share it.
"""

from __future__ import annotations

import difflib
import math
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from agentgym.errors import ConfigError


_PAGE = "a page (a JSON object with 'title' and 'text')"


@dataclass(frozen=True)
class Page:
    """One document: its unique title, its text, and whatever else its file carried."""

    title: str
    text: str
    meta: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Hit:
    """A search result: the page and its BM25 score (higher is better)."""

    page: Page
    score: float


# letters that carry no accent to strip (NFKD leaves them whole, so ASCII would lose them), and apostrophes,
# which names are written with and without (Ma'anshan, Ma’anshan, Maanshan)
_PLAIN = str.maketrans({"ł": "l", "Ł": "L", "ı": "i", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "ø": "o", "Ø": "O",
                        "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ß": "ss", "þ": "th", "Þ": "Th", "ħ": "h",
                        "Ħ": "H", "ŋ": "ng", "Ŋ": "NG", "'": "", "’": "", "‘": "", "ʼ": "", "`": "", "´": ""})


def fold(text: str) -> str:
    """Lowercase ASCII with accents, apostrophes and surrounding spaces removed: how queries, texts and titles
    are compared (Brasília and brasilia are one name, Białystok and Bialystok, Ma'anshan and Maanshan)."""
    return unicodedata.normalize("NFKD", text.translate(_PLAIN)).encode("ascii", "ignore").decode().lower().strip()


class SearchIndex:
    """BM25 over ``pages``; titles must be unique once folded."""

    def __init__(self, pages: Sequence[Page]) -> None:
        import bm25s

        if not pages:
            raise ConfigError("a search index needs at least one page")
        self.pages = list(pages)
        self._by_title: dict[str, Page] = {}
        for p in self.pages:
            key = fold(p.title)
            if key in self._by_title:
                raise ConfigError(f"two pages are titled {p.title!r} (titles must be unique, case and accents aside)")
            self._by_title[key] = p
        self._bm25s = bm25s
        self._retriever = bm25s.BM25()
        self._retriever.index(self._tokenize([f"{p.title}. {p.text}" for p in self.pages]), show_progress=False)

    @classmethod
    def from_jsonl(cls, path: str | Path) -> "SearchIndex":
        """An index of the pages in a JSONL file, gzipped if it ends in ``.gz`` (``title`` and ``text`` on each
        line; other keys kept in ``meta``)."""
        from agentgym.tasks import read_jsonl

        pages = []
        for number, row in read_jsonl(path, _PAGE):
            try:
                title, text = row.pop("title"), row.pop("text")
            except (KeyError, AttributeError, TypeError):
                raise ConfigError(f"{path}, line {number}: not {_PAGE}") from None
            pages.append(Page(str(title), str(text), tuple(sorted(row.items()))))
        return cls(pages)

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        return self._bm25s.tokenize([fold(t) for t in texts], stopwords="en", show_progress=False, return_ids=False)

    def __len__(self) -> int:
        return len(self.pages)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The ``k`` best pages for ``query`` that share a word with it, best first; a page titled
        exactly ``query`` comes first (a country's name is in the text of each of its cities)."""
        if k <= 0:
            return []
        exact = self.page(query)
        hits = [Hit(exact, math.inf)] if exact is not None else []
        tokens = self._tokenize([query])
        if tokens[0]:
            ids, scores = self._retriever.retrieve(tokens, k=min(k + 1, len(self.pages)), show_progress=False,
                                                   n_threads=1)
            hits += [Hit(self.pages[int(i)], float(s)) for i, s in zip(ids[0], scores[0])
                     if s > 0 and self.pages[int(i)] is not exact]
        return hits[:k]

    def page(self, title: str) -> Page | None:
        """The page titled ``title`` (case, accents and surrounding spaces ignored), or None."""
        return self._by_title.get(fold(title))

    def similar_titles(self, title: str, n: int = 3) -> list[str]:
        """Up to ``n`` titles close to ``title``: for an error message that helps. Titles that are ``title``
        with a disambiguator (``Tripoli (Libya)`` for ``Tripoli``) come first."""
        key = fold(title)
        named = [k for k in self._by_title if k.startswith(key + " (") and k.endswith(")")]
        keys = named[:n] + [k for k in difflib.get_close_matches(key, list(self._by_title), n=n, cutoff=0.6)
                            if k not in named]
        return [self._by_title[k].title for k in keys[:n]]


_INDEXES: dict[Path, SearchIndex] = {}
_LOCK = threading.Lock()


def load_index(path: str | Path) -> SearchIndex:
    """The index of a JSONL corpus, built once per process and file."""
    key = Path(path).resolve()
    with _LOCK:  # environments may be created from worker threads too
        if key not in _INDEXES:
            _INDEXES[key] = SearchIndex.from_jsonl(key)
        return _INDEXES[key]
