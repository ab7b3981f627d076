"""Question templates: natural-language questions with gold SQL, instantiated on a real database.

Templates are generic over the domain annotations (:mod:`agentgym.tasks.sql.domains`): a
categorical column to filter or group by, a numeric one to compare, rank or aggregate, a foreign
key to join through. Constants are drawn from the database itself and every candidate is run on
it: a question is kept only when its answer is non-empty and small, and, when it orders or
limits, when ties cannot change the answer. Gold SQL is written in the dialect SQLite and
PostgreSQL share (no date functions, no ``ROUND`` of floats, explicit ``IS NOT NULL`` before
ordering).

Difficulty levels: ``easy`` (one table, filters, counts), ``medium`` (``GROUP BY``, joins,
ordering with limits), ``hard`` (``HAVING``, nested queries, two-hop joins, arg-max).
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from typing import Callable

from agentgym.tasks.sql.domains import Col, Domain, Table

MAX_ROWS = 40


@dataclass
class Question:
    template: str
    difficulty: str
    question: str
    sql: str
    ordered: bool
    tables: list[str]


@dataclass
class Ctx:
    domain: Domain
    conn: sqlite3.Connection
    rng: random.Random

    def rows(self, sql: str) -> list[tuple]:
        return self.conn.execute(sql).fetchall()

    def cols(self, role: str, *, nullable: bool | None = None) -> list[tuple[Table, Col]]:
        return [(t, c) for t in self.domain.tables for c in t.columns if c.role == role
                and (nullable is None or c.nullable == nullable)]

    def fks(self) -> list[tuple[Table, Col, Table]]:
        """(child table, foreign-key column, parent table)."""
        return [(t, c, self.domain.table(c.ref.split(".")[0])) for t in self.domain.tables for c in t.columns if c.ref]

    def value_counts(self, table: str, col: str) -> list[tuple[object, int]]:
        return self.rows(f"SELECT {col}, COUNT(*) FROM {table} WHERE {col} IS NOT NULL GROUP BY {col} ORDER BY {col}")


def lit(v: object) -> str:
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


def say(v: object) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def show(t: Table, alias: str = "") -> str:
    return ", ".join(f"{alias}.{c}" if alias else c for c in t.show)


def an(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def one(t: Table) -> str:
    """The show phrase for a single row: "first and last names" -> "first and last name"."""
    return t.show_phrase[:-1] if t.show_phrase.endswith("s") else t.show_phrase


def role(fk: Col, parent: Table) -> str:
    """How a child relates to its parent, when the key's name alone does not say it."""
    return "" if fk.phrase == parent.noun else f" as {fk.phrase}"


Template = Callable[[Ctx], "Question | None"]


# ----- easy ---------------------------------------------------------------------------------------
def count_all(x: Ctx) -> Question:
    t = x.rng.choice(x.domain.tables)
    return Question("count_all", "easy", f"How many {t.plural} are there?", f"SELECT COUNT(*) FROM {t.name}",
                    False, [t.name])


def filter_cat(x: Ctx) -> Question | None:
    t, c = x.rng.choice(x.cols("cat"))
    vals = [v for v, n in x.value_counts(t.name, c.name) if n <= MAX_ROWS]
    if not vals:
        return None
    v = x.rng.choice(vals)
    return Question("filter_cat", "easy",
                    f"List the {t.show_phrase} of the {t.plural} whose {c.phrase} is {say(v)}.",
                    f"SELECT {show(t)} FROM {t.name} WHERE {c.name} = {lit(v)}", False, [t.name])


def count_cat(x: Ctx) -> Question | None:
    t, c = x.rng.choice(x.cols("cat"))
    v = x.rng.choice(x.value_counts(t.name, c.name))[0]
    return Question("count_cat", "easy", f"How many {t.plural} have {c.phrase} {say(v)}?",
                    f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} = {lit(v)}", False, [t.name])


def filter_num(x: Ctx) -> Question | None:
    t, c = x.rng.choice(x.cols("num"))
    vals = sorted(r[0] for r in x.rows(f"SELECT {c.name} FROM {t.name} WHERE {c.name} IS NOT NULL"))
    if len(vals) < 5:
        return None
    cut = vals[max(0, len(vals) - x.rng.randint(3, min(MAX_ROWS, len(vals) - 1)))]
    if isinstance(cut, float) and c.type == "money":
        cut = float(int(cut))
    word, op = x.rng.choice([("more than", ">"), ("at least", ">=")])
    return Question("filter_num", "easy",
                    f"List the {t.show_phrase} of the {t.plural} with {an(c.phrase)} of {word} {say(cut)}.",
                    f"SELECT {show(t)} FROM {t.name} WHERE {c.name} {op} {lit(cut)}", False, [t.name])


def count_null(x: Ctx) -> Question | None:
    cands = [(t, c) for t in x.domain.tables for c in t.columns if c.nullable]
    t, c = x.rng.choice(cands)
    if x.rng.random() < 0.5:
        return Question("count_null", "easy", f"How many {t.plural} have no {c.phrase} recorded?",
                        f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} IS NULL", False, [t.name])
    return Question("count_null", "easy", f"How many {t.plural} have {an(c.phrase)} recorded?",
                    f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} IS NOT NULL", False, [t.name])


def count_year(x: Ctx) -> Question | None:
    t, c = x.rng.choice(x.cols("date"))
    years = [r[0] for r in x.rows(f"SELECT DISTINCT substr({c.name}, 1, 4) FROM {t.name} ORDER BY 1")]
    y = int(x.rng.choice(years))
    return Question("count_year", "easy", f"How many {t.plural} have {an(c.phrase)} in {y}?",
                    f"SELECT COUNT(*) FROM {t.name} WHERE {c.name} >= '{y}-01-01' AND {c.name} < '{y + 1}-01-01'",
                    False, [t.name])


def aggregate(x: Ctx) -> Question | None:
    t, c = x.rng.choice(x.cols("num"))
    fn, word = x.rng.choice([("MAX", "highest"), ("MIN", "lowest"), ("AVG", "average"), ("SUM", "total")])
    return Question("aggregate", "easy", f"What is the {word} {c.phrase} over all {t.plural}?",
                    f"SELECT {fn}({c.name}) FROM {t.name}", False, [t.name])


# ----- medium -------------------------------------------------------------------------------------
def group_count(x: Ctx) -> Question | None:
    t, c = x.rng.choice(x.cols("cat"))
    return Question("group_count", "medium",
                    f"For each {c.phrase}, how many {t.plural} are there? Give the {c.phrase} and the count.",
                    f"SELECT {c.name}, COUNT(*) FROM {t.name} GROUP BY {c.name}", False, [t.name])


def group_avg(x: Ctx) -> Question | None:
    tc = [(t, c, n) for t, c in x.cols("cat") for tn, n in x.cols("num") if tn is t]
    if not tc:
        return None
    t, c, n = x.rng.choice(tc)
    fn, word = x.rng.choice([("AVG", "average"), ("MAX", "maximum"), ("SUM", "total")])
    return Question("group_avg", "medium",
                    f"What is the {word} {n.phrase} of {t.plural} for each {c.phrase}? "
                    f"Give the {c.phrase} and the {word}.",
                    f"SELECT {c.name}, {fn}({n.name}) FROM {t.name} GROUP BY {c.name}", False, [t.name])


def join_filter(x: Ctx) -> Question | None:
    child, fk, parent = x.rng.choice(x.fks())
    cats = [c for c in parent.columns if c.role == "cat"]
    if not cats:
        return None
    pc = x.rng.choice(cats)
    join = f"{child.name} c JOIN {parent.name} p ON c.{fk.name} = p.{parent.pk.name}"
    counts = x.rows(f"SELECT p.{pc.name}, COUNT(*) FROM {join} WHERE p.{pc.name} IS NOT NULL GROUP BY p.{pc.name}")
    vals = [v for v, k in counts if k <= MAX_ROWS]
    if not vals:
        return None
    v = x.rng.choice(vals)
    return Question("join_filter", "medium",
                    f"List the {child.show_phrase} of the {child.plural} whose {fk.phrase}'s {pc.phrase} is {say(v)}.",
                    f"SELECT {show(child, 'c')} FROM {join} WHERE p.{pc.name} = {lit(v)}", False, [child.name, parent.name])


def top_k(x: Ctx) -> Question | None:
    t, c = x.rng.choice(x.cols("num"))
    k = x.rng.randint(3, 8)
    desc = x.rng.random() < 0.7
    order = "DESC" if desc else "ASC"
    ranked = f"FROM {t.name} WHERE {c.name} IS NOT NULL ORDER BY {c.name} {order}"
    keys = [r[0] for r in x.rows(f"SELECT {c.name} {ranked} LIMIT {k + 1}")]
    if len(keys) <= k or len(set(keys)) != len(keys):
        return None
    word, direction = ("highest", "from highest to lowest") if desc else ("lowest", "from lowest to highest")
    return Question("top_k", "medium",
                    f"List the {t.show_phrase} and {c.phrase} of the {k} {t.plural} with the {word} {c.phrase}, "
                    f"{direction}.",
                    f"SELECT {show(t)}, {c.name} {ranked} LIMIT {k}",
                    True, [t.name])


def sorted_filter(x: Ctx) -> Question | None:
    tc = [(t, c, n) for t, c in x.cols("cat") for tn, n in x.cols("num") if tn is t]
    t, c, n = x.rng.choice(tc)
    vals = [v for v, k in x.value_counts(t.name, c.name) if 2 <= k <= 15]
    if not vals:
        return None
    v = x.rng.choice(vals)
    keys = [r[0] for r in x.rows(f"SELECT {n.name} FROM {t.name} WHERE {c.name} = {lit(v)} AND {n.name} IS NOT NULL")]
    if len(keys) < 2 or len(set(keys)) != len(keys):
        return None
    return Question("sorted_filter", "medium",
                    f"List the {t.show_phrase} and {n.phrase} of the {t.plural} whose {c.phrase} is {say(v)} and whose "
                    f"{n.phrase} is known, sorted by {n.phrase} from lowest to highest.",
                    f"SELECT {show(t)}, {n.name} FROM {t.name} WHERE {c.name} = {lit(v)} AND {n.name} IS NOT NULL "
                    f"ORDER BY {n.name} ASC", True, [t.name])


def join_count(x: Ctx) -> Question | None:
    child, fk, parent = x.rng.choice(x.fks())
    n_parents = x.rows(f"SELECT COUNT(*) FROM {parent.name}")[0][0]
    if n_parents > MAX_ROWS:
        return None
    return Question("join_count", "medium",
                    f"For each {parent.noun} with at least one {child.noun}{role(fk, parent)}, give its {one(parent)} "
                    f"and its number of {child.plural}.",
                    f"SELECT {show(parent, 'p')}, COUNT(*) FROM {parent.name} p JOIN {child.name} c "
                    f"ON c.{fk.name} = p.{parent.pk.name} GROUP BY p.{parent.pk.name}, {show(parent, 'p')}",
                    False, [parent.name, child.name])


# ----- hard -------------------------------------------------------------------------------------
def having(x: Ctx) -> Question | None:
    t, c = x.rng.choice(x.cols("cat"))
    counts = sorted(n for _, n in x.value_counts(t.name, c.name))
    if len(counts) < 3:
        return None
    k = counts[x.rng.randint(len(counts) // 3, len(counts) - 2)]
    return Question("having", "hard",
                    f"Which values of {c.phrase} occur in more than {k} {t.plural}? List those values.",
                    f"SELECT {c.name} FROM {t.name} WHERE {c.name} IS NOT NULL GROUP BY {c.name} HAVING COUNT(*) > {k}",
                    False, [t.name])


def join_having(x: Ctx) -> Question | None:
    child, fk, parent = x.rng.choice(x.fks())
    per_parent = f"SELECT COUNT(*) FROM {child.name} WHERE {fk.name} IS NOT NULL GROUP BY {fk.name}"
    counts = sorted(r[0] for r in x.rows(per_parent))
    if len(counts) < 3:
        return None
    k = counts[max(0, len(counts) - x.rng.randint(2, min(MAX_ROWS, len(counts) - 1)))] - 1
    return Question("join_having", "hard",
                    f"List the {parent.show_phrase} of the {parent.plural} with more than {k} "
                    f"{child.plural}{role(fk, parent)}.",
                    f"SELECT {show(parent, 'p')} FROM {parent.name} p JOIN {child.name} c "
                    f"ON c.{fk.name} = p.{parent.pk.name} GROUP BY p.{parent.pk.name}, {show(parent, 'p')} "
                    f"HAVING COUNT(*) > {k}", False, [parent.name, child.name])


def join_sum_by_cat(x: Ctx) -> Question | None:
    cands = [(ch, fk, p, n, pc) for ch, fk, p in x.fks() for n in ch.columns if n.role == "num"
             for pc in p.columns if pc.role == "cat"]
    if not cands:
        return None
    child, fk, parent, n, pc = x.rng.choice(cands)
    fn, word = x.rng.choice([("SUM", "total"), ("AVG", "average"), ("MAX", "maximum")])
    return Question("join_sum_by_cat", "hard",
                    f"For each {pc.phrase} of the {fk.phrase}, what is the {word} {n.phrase} of the {child.plural}? "
                    f"Give the {pc.phrase} and the {word}.",
                    f"SELECT p.{pc.name}, {fn}(c.{n.name}) FROM {child.name} c JOIN {parent.name} p "
                    f"ON c.{fk.name} = p.{parent.pk.name} GROUP BY p.{pc.name}", False, [child.name, parent.name])


def above_avg(x: Ctx) -> Question | None:
    tc = [(t, c, n) for t, c in x.cols("cat") for tn, n in x.cols("num") if tn is t]
    t, c, n = x.rng.choice(tc)
    v = x.rng.choice([v for v, k in x.value_counts(t.name, c.name) if k <= 3 * MAX_ROWS] or [None])
    if v is None:
        return None
    return Question("above_avg", "hard",
                    f"List the {t.show_phrase} of the {t.plural} whose {c.phrase} is {say(v)} and whose {n.phrase} is "
                    f"above the average {n.phrase} of all {t.plural}.",
                    f"SELECT {show(t)} FROM {t.name} WHERE {c.name} = {lit(v)} AND {n.name} > "
                    f"(SELECT AVG({n.name}) FROM {t.name})", False, [t.name])


def without_children(x: Ctx) -> Question | None:
    child, fk, parent = x.rng.choice(x.fks())
    return Question("without_children", "hard",
                    f"List the {parent.show_phrase} of the {parent.plural} that have no {child.plural}{role(fk, parent)}.",
                    f"SELECT {show(parent)} FROM {parent.name} WHERE {parent.pk.name} NOT IN "
                    f"(SELECT {fk.name} FROM {child.name} WHERE {fk.name} IS NOT NULL)",
                    False, [parent.name, child.name])


def in_subquery(x: Ctx) -> Question | None:
    cands = [(ch, fk, p, cc) for ch, fk, p in x.fks() for cc in ch.columns if cc.role == "cat"]
    child, fk, parent, cc = x.rng.choice(cands)
    v = x.rng.choice(x.value_counts(child.name, cc.name))[0]
    return Question("in_subquery", "hard",
                    f"List the {parent.show_phrase} of the {parent.plural} that have at least one "
                    f"{child.noun}{role(fk, parent)} whose {cc.phrase} is {say(v)}.",
                    f"SELECT {show(parent)} FROM {parent.name} WHERE {parent.pk.name} IN "
                    f"(SELECT {fk.name} FROM {child.name} WHERE {cc.name} = {lit(v)})",
                    False, [parent.name, child.name])


def argmax_count(x: Ctx) -> Question | None:
    child, fk, parent = x.rng.choice(x.fks())
    top = x.rows(f"SELECT COUNT(*) FROM {child.name} WHERE {fk.name} IS NOT NULL GROUP BY {fk.name} "
                 f"ORDER BY COUNT(*) DESC LIMIT 2")
    if not top or (len(top) == 2 and top[0][0] == top[1][0]):
        return None
    return Question("argmax_count", "hard",
                    f"Which {parent.noun} has the most {child.plural}{role(fk, parent)}? Give its {one(parent)}.",
                    f"SELECT {show(parent, 'p')} FROM {parent.name} p JOIN {child.name} c "
                    f"ON c.{fk.name} = p.{parent.pk.name} GROUP BY p.{parent.pk.name}, {show(parent, 'p')} "
                    f"ORDER BY COUNT(*) DESC LIMIT 1",
                    False, [parent.name, child.name])


def two_hop(x: Ctx) -> Question | None:
    chains = [(c, fk1, p, fk2, g) for c, fk1, p in x.fks() for p2, fk2, g in x.fks() if p2 is p]
    if not chains:
        return None
    child, fk1, parent, fk2, grand = x.rng.choice(chains)
    cats = [c for c in grand.columns if c.role == "cat"]
    if not cats:
        return None
    gc = x.rng.choice(cats)
    v = x.rng.choice(x.value_counts(grand.name, gc.name))[0]
    return Question("two_hop", "hard",
                    f"How many {child.plural} have {an(fk1.phrase)} whose {fk2.phrase}'s {gc.phrase} is {say(v)}?",
                    f"SELECT COUNT(*) FROM {child.name} c JOIN {parent.name} p ON c.{fk1.name} = p.{parent.pk.name} "
                    f"JOIN {grand.name} g ON p.{fk2.name} = g.{grand.pk.name} WHERE g.{gc.name} = {lit(v)}",
                    False, [child.name, parent.name, grand.name])


TEMPLATES: dict[str, Template] = {f.__name__: f for f in (
    count_all, filter_cat, count_cat, filter_num, count_null, count_year, aggregate,
    group_count, group_avg, join_filter, top_k, sorted_filter, join_count,
    having, join_having, join_sum_by_cat, above_avg, without_children, in_subquery, argmax_count, two_hop,
)}


def acceptable(x: Ctx, q: Question) -> bool:
    """Keep a question whose gold answer is non-empty, small and not all NULL."""
    try:
        rows = x.rows(q.sql)
    except sqlite3.Error:
        return False
    if not rows or len(rows) > MAX_ROWS:
        return False
    return not all(v is None for r in rows for v in r)


def generate_questions(domain: Domain, conn: sqlite3.Connection, rng: random.Random, n: int) -> list[Question]:
    """``n`` distinct questions on one database, spread evenly over the templates."""
    x = Ctx(domain, conn, rng)
    names = list(TEMPLATES)
    quota = -(-n // len(names)) + 1  # no template takes more than its share plus one
    used = dict.fromkeys(names, 0)
    out: list[Question] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * n:
            raise RuntimeError(f"could only make {len(out)} of {n} questions on {domain.name}")
        open_names = [k for k in names if used[k] < quota] or names
        name = open_names[attempts % len(open_names)] if attempts % 3 else rng.choice(open_names)
        q = TEMPLATES[name](x)
        if q is None or q.sql in seen or not acceptable(x, q):
            continue
        seen.add(q.sql)
        used[name] += 1
        out.append(q)
    return out
