"""Scoring SQL answers: execution accuracy, result overlap and schema linking.

Results from SQLite and PostgreSQL differ in representation, not in meaning: dates are text in
one and ``datetime.date`` in the other, averages are floats or ``Decimal``. :func:`normalize_row`
maps both to one form (ISO dates, integral numbers as ``int``), and numbers compare with a
relative tolerance of 1e-6, so the same query scores the same on either back end.

Partial rewards follow Reasoning-SQL (Pourreza et al., 2025, section 3.2): syntax validity (the
query runs), schema linking (tables and columns used vs the gold query's) and result overlap.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from typing import Any, Iterable, Sequence

_TOL = 1e-6


def normalize_value(v: Any) -> Any:
    """One canonical form for a database value (see the module docstring)."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, (float, Decimal)):
        f = float(v)
        if math.isfinite(f) and f.is_integer() and abs(f) < 2**53:
            return int(f)
        return f
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return str(v)


def normalize_rows(rows: Iterable[Sequence[Any]]) -> list[tuple]:
    return [tuple(normalize_value(v) for v in r) for r in rows]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=_TOL, abs_tol=_TOL)
    return a == b


def _same_row(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))


def _sort_key(row: tuple) -> tuple:
    # Coarse rounding keeps rows that are equal within tolerance next to each other.
    return tuple((0, "") if v is None else (1, round(v, 3)) if isinstance(v, (int, float)) else (2, str(v))
                 for v in row)


def results_match(pred: Sequence[tuple], gold: Sequence[tuple], *, ordered: bool) -> bool:
    """Execution accuracy: the same rows (as multisets, or as sequences when ``ordered``).

    Both arguments are normalized rows. Columns compare by position; names do not matter.
    """
    if len(pred) != len(gold):
        return False
    if ordered:
        return all(_same_row(p, g) for p, g in zip(pred, gold))
    a, b = sorted(pred, key=_sort_key), sorted(gold, key=_sort_key)
    if all(_same_row(p, g) for p, g in zip(a, b)):
        return True
    # Rounding can split near-equal numbers across a boundary: fall back to greedy matching.
    left = list(b)
    for p in a:
        for i, g in enumerate(left):
            if _same_row(p, g):
                del left[i]
                break
        else:
            return False
    return True


def _bag_key(row: tuple) -> tuple:
    return tuple(round(v, 4) if isinstance(v, float) else v for v in row)


def result_overlap(pred: Sequence[tuple], gold: Sequence[tuple]) -> float:
    """Multiset Jaccard similarity of two normalized results (1.0 when both are empty)."""
    if not pred and not gold:
        return 1.0
    from collections import Counter

    a, b = Counter(map(_bag_key, pred)), Counter(map(_bag_key, gold))
    inter = sum((a & b).values())
    union = sum((a | b).values())
    return inter / union if union else 0.0


_COMMENT = re.compile(r"--[^\n]*|/\*.*?(\*/|$)", re.S)
_STRING = re.compile(r"'(?:[^']|'')*'?")
_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def schema_items(sql: str, schema: dict[str, Iterable[str]]) -> tuple[set[str], set[str]]:
    """The tables and columns of ``schema`` that ``sql`` mentions (lower-case names).

    A lexical scan: comments and string literals are dropped, quoted identifiers unquoted, and
    every remaining word that names a table or a column of the schema counts. Aliases and
    keywords match nothing, so no SQL parser is needed.
    """
    text = _COMMENT.sub(" ", sql)
    text = _STRING.sub(" ", text)
    text = _QUOTED.sub(lambda m: " " + m.group(1).replace('""', '"') + " ", text)
    words = {w.lower() for w in _WORD.findall(text)}
    tables = {t.lower() for t in schema}
    columns = {c.lower() for cols in schema.values() for c in cols}
    return words & tables, words & columns


def schema_linking(pred_sql: str, gold_sql: str, schema: dict[str, Iterable[str]]) -> float:
    """F1 between the tables and columns used by ``pred_sql`` and by ``gold_sql``."""
    pt, pc = schema_items(pred_sql, schema)
    gt, gc = schema_items(gold_sql, schema)
    pred = {f"t:{t}" for t in pt} | {f"c:{c}" for c in pc}
    gold = {f"t:{t}" for t in gt} | {f"c:{c}" for c in gc}
    if not pred or not gold:
        return 1.0 if pred == gold else 0.0
    hit = len(pred & gold)
    if hit == 0:
        return 0.0
    precision, recall = hit / len(pred), hit / len(gold)
    return 2 * precision * recall / (precision + recall)
