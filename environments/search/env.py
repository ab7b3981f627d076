"""``search-v0``: answer a two-hop question by searching a local encyclopedia and reading its pages."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import agentgym.tasks.search as search_tasks
from agentgym.env import Environment, tool
from agentgym.errors import ConfigError, InvalidActionError
from agentgym.parsing import keyword_action
from agentgym.tools.search import SearchIndex, fold, load_index
from agentgym.types import Milestone, Task, ToolCall

MILESTONES = (
    Milestone(id="start_page", description="opened the page of an entity the question names", weight=0.2),
    Milestone(id="answer_pages", description="opened every page that holds the answer", weight=0.3),
    Milestone(id="correct_answer", description="answered correctly", weight=1.0),
)
_ARTICLE = re.compile(r"^(the|a|an)\s+")
_NOT_WORD = re.compile(r"[^0-9a-z]+")


def normalize_answer(text: str) -> str:
    """Lowercase ASCII words without punctuation, a leading article or digit grouping: ``"The Sol."`` -> ``"sol"``."""
    text = fold(text)
    text = re.sub(r"(?<=\d)[,\s](?=\d{3}\b)", "", text)  # 7,737,002 and 7 737 002 -> 7737002
    text = _NOT_WORD.sub(" ", text).strip()
    return _ARTICLE.sub("", text)


class SearchEnv(Environment):
    """Multi-hop question answering over a local encyclopedia of countries and cities.

    Each task asks a question whose answer sits one page away from the page of the entity it
    names (``What currency is used in the country where the city of Arequipa is?``): the agent
    searches (BM25, the top ``top_k`` titles with a snippet each), opens pages by title, and
    answers, which ends the episode. Reward 1 for a correct answer (compared after
    :func:`normalize_answer`; any of ``task.data["answers"]``), else 0.

    Milestones: ``start_page`` (opened the page of an entity the question names),
    ``answer_pages`` (opened every page that holds the answer), ``correct_answer``. The state
    key is what the agent has found: the pages opened and the titles the latest search listed.

    Plain text works as an action too: ``search Lima``, ``open: Peru``, ``answer[Sol]``,
    ``Action: open(Peru)``.

    Args:
        corpus: a JSONL file of pages (``title``, ``text``; gzipped if named ``.gz``); default: the shipped encyclopedia
            (``agentgym.tasks.search``, made by its generator).
        top_k: results per search.
        snippet_chars: characters of each result's text shown with its title.
    """

    def __init__(self, *, corpus: str | Path | None = None, top_k: int = 5, snippet_chars: int = 80) -> None:
        super().__init__()
        if top_k <= 0 or snippet_chars < 0:
            raise ConfigError(f"top_k must be positive and snippet_chars >= 0, got {top_k} and {snippet_chars}")
        path = Path(corpus) if corpus is not None else Path(search_tasks.__file__).parent / search_tasks.CORPUS
        if not path.is_file():
            raise ConfigError(f"no search corpus at {path}")
        self.index: SearchIndex = load_index(path)
        self.top_k, self.snippet_chars = top_k, snippet_chars
        self.opened: list[str] = []
        self.listed: tuple[str, ...] = ()
        self.searched = False

    async def reset(self, task: Task) -> str:
        data = task.data
        missing = [k for k in ("answers", "start", "answer_pages") if k not in data]
        if missing:
            raise ConfigError(f"task {task.id} has no data[{missing[0]!r}]; search-v0 tasks need 'answers', "
                              "'start' and 'answer_pages'")
        pages = {t: self.index.page(t) for t in [*data["start"], *data["answer_pages"]]}
        unknown = [t for t, page in pages.items() if page is None]
        if unknown:
            raise ConfigError(f"task {task.id} names pages the corpus lacks: {unknown}")
        # the pages' own titles: a task may spell them in another case or without accents
        self.start = [pages[t].title for t in data["start"]]  # type: ignore[union-attr]
        self.answer_pages = [pages[t].title for t in data["answer_pages"]]  # type: ignore[union-attr]
        self.answers = {normalize_answer(a) for a in data["answers"]}
        self.opened, self.listed, self.searched = [], (), False
        return (f"{task.prompt}\n\nFind the answer in a small encyclopedia of countries and cities. Tools: "
                f"search(query) lists the {self.top_k} best matching page titles, open(title) shows a page, "
                "answer(answer) gives your final answer (a name or a number) and ends the episode.")

    # ----- tools -----------------------------------------------------------------------------
    @tool
    def search(self, query: str) -> str:
        """Search the encyclopedia; lists the titles of the best matching pages with the start of each.

        Args:
            query: Words to look for, e.g. a name.
        """
        if not query.strip():
            raise InvalidActionError("The query is empty: pass the words to look for in 'query'.")
        hits = self.index.search(query, self.top_k)
        self.searched = True
        self.listed = tuple(h.page.title for h in hits)
        if not hits:
            return f"No page matches {query!r}. Try other words, e.g. a name from the question."
        lines = [f"Results for {query!r}:"]
        for n, hit in enumerate(hits, 1):
            text = hit.page.text
            snippet = text if len(text) <= self.snippet_chars else text[:self.snippet_chars].rsplit(" ", 1)[0] + " ..."
            lines.append(f"{n}. {hit.page.title}: {snippet}")
        return "\n".join(lines)

    @tool(name="open")
    def open_page(self, title: str) -> str:
        """Open the page with this title and read it.

        Args:
            title: A page title, as search lists it.
        """
        page = self.index.page(title)
        if page is None:
            close = self.index.similar_titles(title)
            hint = f" Did you mean {', '.join(close)}?" if close else " Search for it first."
            raise InvalidActionError(f"There is no page titled {title.strip()!r}.{hint}")
        if page.title not in self.opened:
            self.opened.append(page.title)
        if any(t in self.opened for t in self.start):
            self.reach("start_page")
        if all(t in self.opened for t in self.answer_pages):
            self.reach("answer_pages")
        return f"{page.title}\n{page.text}"

    @tool
    def answer(self, answer: str) -> str:
        """Give your final answer; this ends the episode.

        Args:
            answer: The answer alone, e.g. a name or a number.
        """
        if not answer.strip():
            raise InvalidActionError("The answer is empty: pass it in 'answer'.")
        correct = normalize_answer(answer) in self.answers
        if correct:
            self.reach("correct_answer")
        self.finish(reward=1.0 if correct else 0.0, success=correct)
        return "Correct." if correct else "Incorrect."

    def on_text(self, text: str) -> ToolCall | None:
        """``search X``, ``open: X``, ``answer[X]`` or ``Action: open(X)`` (the first line) as a tool call."""
        return keyword_action(text, {"search": "query", "open": "title", "answer": "answer"})

    # ----- state -----------------------------------------------------------------------------
    def state_key(self) -> str:
        """The pages opened (as a set), the titles the latest search listed, and whether the episode is over."""
        return f"opened={'|'.join(sorted(self.opened))}&listed={'|'.join(self.listed)}&done={int(self.done)}"

    def snapshot(self) -> dict[str, Any]:
        return {**self._base_snapshot(), "task": self.task, "opened": list(self.opened), "listed": self.listed,
                "searched": self.searched}

    def restore(self, snapshot: dict[str, Any]) -> None:
        if getattr(self, "task", None) is None or snapshot["task"].id != self.task.id:
            raise ValueError(f"snapshot is of task {snapshot['task'].id!r}; reset to that task before restoring it")
        self._base_restore(snapshot)
        self.opened, self.listed, self.searched = list(snapshot["opened"]), snapshot["listed"], snapshot["searched"]

    # ----- scripted policies ------------------------------------------------------------------
    def expert_action(self) -> ToolCall:
        """Search the entity the question names, open its page, open the page with the answer, answer."""
        first = self.start[0]
        if first not in self.opened:
            if first in self.listed or self.searched:
                return ToolCall(name="open", arguments={"title": first})
            return ToolCall(name="search", arguments={"query": first.split(" (")[0]})
        for title in self.answer_pages:
            if title not in self.opened:  # named by the page just read, or by the question
                return ToolCall(name="open", arguments={"title": title})
        return ToolCall(name="answer", arguments={"answer": self.task.data["answers"][0]})

    def random_action(self, rng: random.Random) -> ToolCall:
        """Search a word of the question, open a listed (or any) page, or, one time in ten, answer a title."""
        kind = rng.choices(["search", "open", "answer"], [4, 5, 1])[0]
        if kind == "search":
            words = re.findall(r"[A-Z][\w'-]+", self.task.prompt) or ["city"]
            return ToolCall(name="search", arguments={"query": rng.choice(words)})
        titles = list(self.listed) or [rng.choice(self.index.pages).title]
        return ToolCall(name=kind, arguments={"title" if kind == "open" else "answer": rng.choice(titles)})
