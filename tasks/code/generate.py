"""Seeded generator of the code-v0 task suites: ``python -m agentgym.tasks.code.generate``.

Each family is a parameterized task: the parameters change what the function must compute (the
operations composed, the rule, the costs), not only its inputs. A family draws parameters from a
train range or a held-out range; expected outputs come from running the family's reference
solution here, on inputs drawn from the same seeded generator. Suites:

- ``train``: the train families, train parameter ranges;
- ``test-seen``: the same families, held-out parameter ranges (never drawn for train);
- ``test-unseen``: families that never appear in train.

Regenerating with the same seed gives byte-identical files (a test checks the committed ones).
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

SEED = 20261122
HERE = Path(__file__).resolve().parent
MILESTONES = [
    {"id": "runs", "description": "Code ran without an error.", "weight": 1.0},
    {"id": "public-tests-pass", "description": "All public example tests passed.", "weight": 1.0},
    {"id": "half-hidden-pass", "description": "A submission passed at least half of the hidden tests.", "weight": 1.0},
]


@dataclass
class Variant:
    """One task drawn from a family: what to write, a reference solution and test inputs."""

    key: str                      # identifies the parameters, for de-duplication
    name: str                     # function name (or "main" for programs)
    signature: str                # e.g. "transform(s: str) -> str"
    spec: str
    solution: str
    inputs: list[Any] = field(default_factory=list)  # argument tuples, or stdin strings for programs
    kind: str = "function"


# ----- strings ---------------------------------------------------------------------------------
_STR_OPS: dict[str, tuple[str, str]] = {
    "reverse": ("reverse the string", "s = s[::-1]"),
    "upper": ("convert it to upper case", "s = s.upper()"),
    "lower": ("convert it to lower case", "s = s.lower()"),
    "swapcase": ("swap the case of every letter", "s = s.swapcase()"),
    "novowel": ("remove every vowel (a, e, i, o, u in either case)", "s = ''.join(c for c in s if c.lower() not in 'aeiou')"),
    "double": ("repeat every character twice", "s = ''.join(c * 2 for c in s)"),
    "dedupe": ("collapse each run of equal consecutive characters into one character",
               "s = ''.join(c for i, c in enumerate(s) if i == 0 or s[i - 1] != c)"),
    "letters": ("keep only the letters", "s = ''.join(c for c in s if c.isalpha())"),
}


def _shift_op(k: int) -> tuple[str, str]:
    return (f"shift every lowercase letter {k} places forward in the alphabet, wrapping from z to a "
            f"(other characters stay)",
            f"s = ''.join(chr((ord(c) - 97 + {k}) % 26 + 97) if 'a' <= c <= 'z' else c for c in s)")


def _rotate_op(k: int) -> tuple[str, str]:
    return (f"rotate it left by {k} positions (the first {k} characters move to the end; "
            f"use {k} modulo the length, and leave an empty string as it is)",
            f"s = s[{k} % len(s):] + s[:{k} % len(s)] if s else s")


def fam_str_pipeline(rng: random.Random, held_out: bool) -> Variant:
    n_ops = 3 if held_out else 2
    ops = []
    for _ in range(n_ops):
        pick = rng.choice(list(_STR_OPS) + ["shift", "rotate"])
        if pick == "shift":
            k = rng.randint(1, 25)
            ops.append((f"shift{k}", *_shift_op(k)))
        elif pick == "rotate":
            k = rng.randint(1, 5)
            ops.append((f"rot{k}", *_rotate_op(k)))
        else:
            ops.append((pick, *_STR_OPS[pick]))
    steps = "; then ".join(o[1] for o in ops)
    body = "\n".join("    " + o[2] for o in ops)
    solution = f"def transform(s: str) -> str:\n{body}\n    return s\n"
    alphabet = "abcdefghijklmnopqrstuvwxyzAEIOUXYZ  !?,.0123"
    inputs = [("",)] + [("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14))),) for _ in range(12)]
    return Variant("|".join(o[0] for o in ops), "transform", "transform(s: str) -> str",
                   f"Transform the string s in order: {steps}. Return the result.", solution, inputs)


# ----- lists -----------------------------------------------------------------------------------
def fam_list_pipeline(rng: random.Random, held_out: bool) -> Variant:
    k = rng.randint(6, 9) if held_out else rng.randint(2, 5)
    filters = [("even", "keep the even numbers", "x % 2 == 0"), ("odd", "keep the odd numbers", "x % 2 != 0"),
               ("gt", f"keep the numbers greater than {k}", f"x > {k}"),
               ("div", f"keep the numbers divisible by {k}", f"x % {k} == 0"),
               ("neg", "keep the negative numbers", "x < 0")]
    maps = [("mul", f"multiply each by {k}", f"x * {k}"), ("add", f"add {k} to each", f"x + {k}"),
            ("sq", "square each", "x * x"), ("abs", "take the absolute value of each", "abs(x)"),
            ("mod", f"replace each by its remainder modulo {k} (Python's %, never negative)", f"x % {k}")]
    aggs = [("sum", "return their sum (0 if none are left)", "sum(ys)"),
            ("max", "return the largest (None if none are left)", "max(ys) if ys else None"),
            ("count", "return how many there are", "len(ys)"),
            ("sorted", "return them sorted in decreasing order as a list", "sorted(ys, reverse=True)"),
            ("first3", "return the first three of them as a list (fewer if there are fewer)", "ys[:3]")]
    f, m, a = rng.choice(filters), rng.choice(maps), rng.choice(aggs)
    while held_out and str(k) not in f[2] + m[2]:  # a held-out variant must depend on its held-out k
        f, m = rng.choice(filters), rng.choice(maps)
    solution = (f"def process(nums: list) -> object:\n    ys = [{m[2]} for x in nums if {f[2]}]\n"
                f"    return {a[2]}\n")
    inputs = [([],)] + [([rng.randint(-20, 30) for _ in range(rng.randint(1, 12))],) for _ in range(12)]
    uses_k = str(k) in f[2] + m[2]
    return Variant(f"{f[0]}|{m[0]}|{a[0]}|{k if uses_k else ''}", "process", "process(nums: list[int])",
                   f"Given a list of integers nums: {f[1]}; {m[1]}; then {a[1]}.", solution, inputs)


# ----- math ------------------------------------------------------------------------------------
def fam_recurrence(rng: random.Random, held_out: bool) -> Variant:
    lo, hi = (4, 6) if held_out else (1, 3)
    p, q = rng.randint(lo, hi), rng.choice([-1, 1]) * rng.randint(lo, hi)
    a0, a1, m = rng.randint(0, 3), rng.randint(1, 4), rng.choice([97, 1000, 10007])
    solution = (f"def term(n: int) -> int:\n    a, b = {a0}, {a1}\n    for _ in range(n):\n"
                f"        a, b = b, ({p} * b + ({q}) * a) % {m}\n    return a\n")
    spec = (f"The sequence a is defined by a(0) = {a0}, a(1) = {a1} and a(n) = ({p} * a(n-1) + ({q}) * a(n-2)) "
            f"mod {m} for n >= 2 (the result of mod is never negative). Return a(n) for n >= 0.")
    inputs = [(0,), (1,), (5,)] + [(rng.randint(2, 300),) for _ in range(10)]
    return Variant(f"{p}|{q}|{a0}|{a1}|{m}", "term", "term(n: int) -> int", spec, solution, inputs)


def fam_digits(rng: random.Random, held_out: bool) -> Variant:
    base = rng.randint(11, 16) if held_out else rng.randint(2, 9)
    power = rng.randint(1, 3)
    what = rng.choice(["sum", "count_max"])
    if what == "sum":
        spec = (f"Return the sum of the {power}th powers of the digits of n written in base {base} "
                f"(n >= 0; the number 0 has the single digit 0).")
        body = f"    return sum(d ** {power} for d in digits)\n"
    else:
        power = 0
        spec = (f"Write n (n >= 0) in base {base}; return how many times its largest digit occurs "
                f"(the number 0 has the single digit 0).")
        body = "    return digits.count(max(digits))\n"
    solution = (f"def digit_stat(n: int) -> int:\n    digits = []\n    while True:\n        digits.append(n % {base})\n"
                f"        n //= {base}\n        if n == 0:\n            break\n{body}")
    inputs = [(0,), (base,), (base * base - 1,)] + [(rng.randint(0, 10 ** 6),) for _ in range(10)]
    return Variant(f"{base}|{power}|{what}", "digit_stat", "digit_stat(n: int) -> int", spec, solution, inputs)


# ----- parsing ---------------------------------------------------------------------------------
def fam_kv_records(rng: random.Random, held_out: bool) -> Variant:
    pair_seps, kv_seps = ([";", "|"], ["=", ":"]) if not held_out else (["&", ","], ["->", "~"])
    ps, ks = rng.choice(pair_seps), rng.choice(kv_seps)
    what = rng.choice(["sum_prefix", "max_key", "count_over"])
    letter, t = rng.choice("abcxyz"), rng.randint(5, 50)
    head = (f"def parse(text: str) -> object:\n    rec = {{}}\n    for part in text.split({ps!r}):\n"
            f"        part = part.strip()\n        if not part:\n            continue\n"
            f"        key, value = part.split({ks!r}, 1)\n        rec[key.strip()] = int(value)\n")
    if what == "sum_prefix":
        goal, tail = (f"return the sum of the values whose key starts with {letter!r} (0 if none)",
                      f"    return sum(v for k, v in rec.items() if k.startswith({letter!r}))\n")
    elif what == "max_key":
        goal, tail = ("return the key with the largest value (the alphabetically first key on a tie; None for no "
                      "pairs)", "    return min(rec, key=lambda k: (-rec[k], k)) if rec else None\n")
    else:
        goal, tail = (f"return the sorted list of keys whose value is greater than {t}",
                      f"    return sorted(k for k, v in rec.items() if v > {t})\n")
    spec = (f"text holds key/value pairs separated by {ps!r}; in each pair the key and the integer value are "
            f"separated by {ks!r}; spaces around pairs, keys and values are ignored, empty pairs are skipped, and "
            f"a later pair with the same key replaces the earlier one. Parse it and {goal}.")
    keys = ["alpha", "beta", "xray", "yank", "cat", "zed", "apple", "crane", "bob", "axe"]

    def record() -> str:
        parts = [f"{rng.choice(keys)}{' ' if rng.random() < .3 else ''}{ks} {rng.randint(-10, 99)}"
                 for _ in range(rng.randint(1, 6))]
        return (ps + (" " if rng.random() < .5 else "")).join(parts) + (ps if rng.random() < .3 else "")
    inputs = [("",)] + [(record(),) for _ in range(12)]
    return Variant(f"{ps}|{ks}|{what}|{letter}|{t}", "parse", "parse(text: str)", spec, head + tail, inputs)


def fam_score_report(rng: random.Random, held_out: bool) -> Variant:
    k = rng.randint(4, 6) if held_out else rng.randint(1, 3)
    order = rng.choice(["high", "low"])
    key = "(-score, name)" if order == "high" else "(score, name)"
    floor = rng.randint(0, 6)
    solution = ("import sys\n\n\ndef main() -> None:\n    rows = []\n    for line in sys.stdin.read().splitlines():\n"
                "        if line.strip():\n            name, score = line.split()\n"
                f"            if int(score) >= {floor}:\n"
                "                rows.append((name, int(score)))\n"
                f"    rows.sort(key=lambda r: ({key.replace('score', 'r[1]').replace('name', 'r[0]')}))\n"
                f"    for name, score in rows[:{k}]:\n        print(name, score)\n\n\nmain()\n")
    word = "highest" if order == "high" else "lowest"
    spec = (f"Write a program that reads lines 'NAME SCORE' (SCORE an integer) from standard input, ignoring "
            f"blank lines and entries scoring below {floor}, and prints the {k} entries with the {word} scores, one 'NAME SCORE' per line, "
            f"ordered by score ({word} first) and then by name alphabetically. Print fewer lines when there "
            f"are fewer entries.")
    names = ["ann", "bo", "cy", "dee", "eve", "fay", "gus", "hal", "ivy", "jo"]
    inputs = ["\n".join(f"{rng.choice(names)} {rng.randint(0, 20)}" for _ in range(rng.randint(0, 8))) + "\n"
              for _ in range(13)]
    return Variant(f"{k}|{order}|{floor}", "main", "a program (stdin to stdout)", spec, solution, inputs, kind="program")


# ----- data structures -------------------------------------------------------------------------
def fam_stack_machine(rng: random.Random, held_out: bool) -> Variant:
    extra = ["swap", "over"] if held_out else ["dup", "drop"]
    sub_order = rng.choice(["top-minus-below", "below-minus-top"])
    result = rng.choice(["top", "stack", "sum"])
    sub_expr = "a - b" if sub_order == "top-minus-below" else "b - a"
    third = rng.choice(["mul", "max", "min"])
    third_expr = {"mul": "a * b", "max": "max(a, b)", "min": "min(a, b)"}[third]
    third_doc = {"mul": "product", "max": "larger", "min": "smaller"}[third]
    ops_code = {"dup": "            st.append(st[-1])\n", "drop": "            st.pop()\n",
                "swap": "            st[-1], st[-2] = st[-2], st[-1]\n", "over": "            st.append(st[-2])\n"}
    branches = "".join(f"        elif op == {o!r}:\n{ops_code[o]}" for o in extra)
    ret = {"top": "st[-1] if st else None", "stack": "st", "sum": "sum(st)"}[result]
    solution = ("def run(program: list) -> object:\n    st = []\n    for ins in program:\n        op, *arg = ins.split()\n"
                "        if op == 'push':\n            st.append(int(arg[0]))\n"
                f"        elif op in ('add', 'sub', {third!r}):\n            a = st.pop()\n            b = st.pop()\n"
                f"            st.append(a + b if op == 'add' else {third_expr} if op == {third!r} else {sub_expr})\n"
                f"{branches}    return {ret}\n")
    extra_doc = {"dup": "'dup' pushes a copy of the top", "drop": "'drop' removes the top",
                 "swap": "'swap' exchanges the top two", "over": "'over' pushes a copy of the second from the top"}
    what = {"top": "the top of the stack (None if empty)", "stack": "the stack as a list, bottom first",
            "sum": "the sum of the stack"}[result]
    sub_doc = "top minus the one below" if sub_order == "top-minus-below" else "the one below minus the top"
    spec = (f"Run a stack machine program (a list of instructions) starting from an empty stack: 'push N' pushes "
            f"the integer N; 'add', 'sub' and '{third}' pop the top two values and push their sum, difference "
            f"({sub_doc}) or {third_doc}; {extra_doc[extra[0]]}; {extra_doc[extra[1]]}. Programs are always valid. "
            f"Return {what}.")

    def program() -> list:
        prog, depth = [], 0
        for _ in range(rng.randint(1, 10)):
            choices = ["push"] + (["add", "sub", third] if depth >= 2 else []) + \
                      ([extra[0]] if depth >= 2 else []) + ([extra[1]] if depth >= 2 else [])
            op = rng.choice(choices)
            if op == "push":
                prog.append(f"push {rng.randint(-9, 9)}")
                depth += 1
            else:
                prog.append(op)
                depth += {"add": -1, "sub": -1, third: -1, "dup": 1, "drop": -1, "swap": 0, "over": 1}[op]
        return prog
    inputs = [([],) if result != "top" else (["push 3"],)] + [(program(),) for _ in range(12)]
    return Variant(f"{extra}|{sub_order}|{result}|{third}", "run", "run(program: list[str])", spec, solution, inputs)


def fam_cache_misses(rng: random.Random, held_out: bool) -> Variant:
    cap = rng.randint(5, 7) if held_out else rng.randint(2, 4)
    policy = rng.choice(["lru", "fifo"])
    touch = "            order.remove(x)\n            order.append(x)\n" if policy == "lru" else ""
    what = rng.choice(["misses", "hits", "evictions"])
    solution = (f"def misses(accesses: list) -> int:\n    order, miss, hit, gone = [], 0, 0, 0\n    for x in accesses:\n"
                f"        if x in order:\n            hit += 1\n{touch}"
                f"        else:\n            miss += 1\n            if len(order) == {cap}:\n"
                f"                order.pop(0)\n                gone += 1\n            order.append(x)\n"
                f"    return {{'misses': miss, 'hits': hit, 'evictions': gone}}[{what!r}]\n")
    rule = ("the least recently used item (an access to a cached item makes it the most recently used)"
            if policy == "lru" else "the item that entered the cache first (accessing a cached item changes nothing)")
    spec = (f"A cache holds at most {cap} items and starts empty. For each access in order: if the item is not "
            f"cached it is a miss and is added, evicting {rule} when the cache is full; otherwise it is a hit. "
            f"Return the number of {what}.")
    inputs = [([],)] + [([rng.randint(0, cap + 3) for _ in range(rng.randint(1, 20))],) for _ in range(12)]
    return Variant(f"{cap}|{policy}|{what}", "misses", "misses(accesses: list[int]) -> int", spec, solution, inputs)


# ----- simulation ------------------------------------------------------------------------------
def fam_grid_robot(rng: random.Random, held_out: bool) -> Variant:
    w, h = (rng.randint(7, 10), rng.randint(7, 10)) if held_out else (rng.randint(3, 6), rng.randint(3, 6))
    edge = rng.choice(["wrap", "clamp"])
    step = ("        x, y = (x + dx) % W, (y + dy) % H\n" if edge == "wrap" else
            "        x, y = min(max(x + dx, 0), W - 1), min(max(y + dy, 0), H - 1)\n")
    solution = (f"def walk(moves: str) -> tuple:\n    W, H = {w}, {h}\n    x, y = 0, 0\n    for m in moves:\n"
                f"        dx, dy = {{'R': (1, 0), 'L': (-1, 0), 'U': (0, 1), 'D': (0, -1)}}.get(m, (0, 0))\n"
                f"{step}    return (x, y)\n")
    rule = ("moving off one edge re-enters from the opposite edge" if edge == "wrap"
            else "a move that would leave the grid is ignored")
    spec = (f"A robot starts at (0, 0) on a grid {w} wide (x from 0 to {w - 1}) and {h} high (y from 0 to {h - 1}). "
            f"moves is a string of 'U' (y+1), 'D' (y-1), 'L' (x-1), 'R' (x+1); other characters are ignored; "
            f"{rule}. Return the final position as a tuple (x, y).")
    inputs = [("",)] + [("".join(rng.choice("UDLRUDLRX") for _ in range(rng.randint(1, 25))),) for _ in range(12)]
    return Variant(f"{w}|{h}|{edge}", "walk", "walk(moves: str) -> tuple[int, int]", spec, solution, inputs)


def fam_bank(rng: random.Random, held_out: bool) -> Variant:
    fee = rng.randint(3, 5) if held_out else rng.randint(0, 2)
    rule = rng.choice(["reject", "penalty"])
    penalty = rng.randint(5, 15)
    if rule == "reject":
        wd = (f"            if bal - amount - {fee} >= 0:\n                bal -= amount + {fee}\n")
        rule_doc = f"a withdrawal that would make the balance negative (counting the fee) is skipped entirely"
    else:
        wd = (f"            bal -= amount + {fee}\n            if bal < 0:\n                bal -= {penalty}\n")
        rule_doc = f"after a withdrawal that leaves the balance negative, a further penalty of {penalty} is charged"
    solution = ("def settle(ops: list) -> int:\n    bal = 0\n    for kind, amount in ops:\n        if kind == 'dep':\n"
                f"            bal += amount\n        elif kind == 'wd':\n{wd}    return bal\n")
    spec = (f"An account starts at balance 0. ops is a list of (kind, amount) pairs: ('dep', n) deposits n; "
            f"('wd', n) withdraws n and charges a fee of {fee}; {rule_doc}. Return the final balance.")
    inputs = [([],)] + [([(rng.choice(["dep", "wd", "wd"]), rng.randint(1, 50)) for _ in range(rng.randint(1, 10))],)
                        for _ in range(12)]
    return Variant(f"{fee}|{rule}|{penalty if rule == 'penalty' else 0}", "settle",
                   "settle(ops: list[tuple[str, int]]) -> int", spec, solution, inputs)


# ----- small algorithms ------------------------------------------------------------------------
def fam_coins(rng: random.Random, held_out: bool) -> Variant:
    coins = sorted(rng.sample(range(2, 13), 4 if held_out else rng.randint(2, 3)))
    what = rng.choice(["min", "ways"])
    if what == "min":
        solution = (f"def coins(amount: int) -> int:\n    best = [0] + [None] * amount\n    for a in range(1, amount + 1):\n"
                    f"        options = [best[a - c] for c in {coins} if c <= a and best[a - c] is not None]\n"
                    f"        best[a] = min(options) + 1 if options else None\n"
                    f"    return -1 if best[amount] is None else best[amount]\n")
        spec = (f"With an unlimited supply of coins of values {coins}, return the fewest coins that add up to "
                f"amount exactly (amount >= 0), or -1 if it cannot be done.")
    else:
        solution = (f"def coins(amount: int) -> int:\n    ways = [1] + [0] * amount\n    for c in {coins}:\n"
                    f"        for a in range(c, amount + 1):\n            ways[a] += ways[a - c]\n    return ways[amount]\n")
        spec = (f"With an unlimited supply of coins of values {coins}, return the number of different multisets of "
                f"coins that add up to amount (amount >= 0; order does not matter; amount 0 has one way).")
    inputs = [(0,), (1,), (coins[0],)] + [(rng.randint(1, 120),) for _ in range(10)]
    return Variant(f"{coins}|{what}", "coins", "coins(amount: int) -> int", spec, solution, inputs)


def fam_edit_distance(rng: random.Random, held_out: bool) -> Variant:
    ins, dele, sub = rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 6)
    solution = (f"def distance(a: str, b: str) -> int:\n    prev = [j * {ins} for j in range(len(b) + 1)]\n"
                f"    for i in range(1, len(a) + 1):\n        cur = [i * {dele}]\n        for j in range(1, len(b) + 1):\n"
                f"            same = a[i - 1] == b[j - 1]\n"
                f"            cur.append(min(prev[j] + {dele}, cur[j - 1] + {ins}, prev[j - 1] + (0 if same else {sub})))\n"
                f"        prev = cur\n    return prev[-1]\n")
    spec = (f"Return the cheapest cost of turning string a into string b, where inserting a character costs {ins}, "
            f"deleting one costs {dele} and replacing one by a different character costs {sub}.")
    word = lambda: "".join(rng.choice("abcd") for _ in range(rng.randint(0, 7)))  # noqa: E731
    inputs = [("", ""), ("abc", ""), ("", "ab")] + [(word(), word()) for _ in range(10)]
    return Variant(f"{ins}|{dele}|{sub}", "distance", "distance(a: str, b: str) -> int", spec, solution, inputs)


def fam_run_length(rng: random.Random, held_out: bool) -> Variant:
    style, min_run = rng.choice(["char-count", "count-char"]), rng.randint(1, 4)
    piece = "c + str(n)" if style == "char-count" else "str(n) + c"
    solution = (f"def encode(s: str) -> str:\n    out, i = [], 0\n    while i < len(s):\n        j = i\n"
                f"        while j < len(s) and s[j] == s[i]:\n            j += 1\n        c, n = s[i], j - i\n"
                f"        out.append({piece} if n >= {min_run} else c * n)\n        i = j\n    return ''.join(out)\n")
    fmt = "the character followed by the run length" if style == "char-count" else "the run length followed by the character"
    spec = (f"Run-length encode s (letters only): each maximal run of one repeated character of length at least "
            f"{min_run} becomes {fmt} (e.g. a run 'aaaa' of length 4); shorter runs are copied unchanged.")
    inputs = [("",)] + [("".join(rng.choice("aab") * rng.randint(1, 4) for _ in range(rng.randint(1, 6))),)
                        for _ in range(12)]
    return Variant(f"{style}|{min_run}", "encode", "encode(s: str) -> str", spec, solution, inputs)


def fam_brackets(rng: random.Random, held_out: bool) -> Variant:
    pairs = rng.sample(["()", "[]", "{}", "<>"], rng.randint(2, 3))
    opens = "".join(p[0] for p in pairs)
    closes = "".join(p[1] for p in pairs)
    solution = (f"def depth(s: str) -> int:\n    st, best = [], 0\n    for c in s:\n        if c in {opens!r}:\n"
                f"            st.append(c)\n            best = max(best, len(st))\n        elif c in {closes!r}:\n"
                f"            if not st or {opens!r}.index(st.pop()) != {closes!r}.index(c):\n                return -1\n"
                f"    return best if not st else -1\n")
    spec = (f"The bracket pairs are {', '.join(pairs)}; other characters are ignored. Return the maximum nesting "
            f"depth of s if its brackets are balanced and properly nested, else -1 ('' has depth 0).")
    chars = opens + closes + "x"
    inputs = [("",), (pairs[0],), (pairs[0][0],)]
    for _ in range(10):
        if rng.random() < 0.5:  # build a balanced one so both answers occur
            s = ""
            for _ in range(rng.randint(1, 4)):
                p = rng.choice(pairs)
                s = rng.choice([p[0] + s + p[1], s + p, p + s])
            inputs.append((s,))
        else:
            inputs.append(("".join(rng.choice(chars) for _ in range(rng.randint(1, 8))),))
    return Variant("".join(pairs), "depth", "depth(s: str) -> int", spec, solution, inputs)


def fam_automaton(rng: random.Random, held_out: bool) -> Variant:
    rule = rng.randint(1, 254)
    solution = (f"def evolve(cells: str, steps: int) -> str:\n    for _ in range(steps):\n        padded = '0' + cells + '0'\n"
                f"        cells = ''.join(str(({rule} >> int(padded[i:i + 3], 2)) & 1) for i in range(len(cells)))\n"
                f"    return cells\n")
    spec = (f"cells is a string of '0' and '1'. Apply the elementary cellular automaton rule {rule} (Wolfram "
            f"numbering: a cell's next state is bit number (left*4 + self*2 + right) of {rule}) steps times, with "
            f"cells beyond both ends always '0'. Return the final string.")
    inputs = [("", 3), ("1", 1), ("010", 2)] + [("".join(rng.choice("01") for _ in range(rng.randint(1, 12))),
                                                  rng.randint(0, 6)) for _ in range(10)]
    return Variant(str(rule), "evolve", "evolve(cells: str, steps: int) -> str", spec, solution, inputs)


TRAIN_FAMILIES: dict[str, Callable[[random.Random, bool], Variant]] = {
    "strings-pipeline": fam_str_pipeline, "lists-pipeline": fam_list_pipeline, "math-recurrence": fam_recurrence,
    "math-digits": fam_digits, "parsing-records": fam_kv_records, "parsing-report": fam_score_report,
    "structures-stack": fam_stack_machine, "structures-cache": fam_cache_misses, "simulation-robot": fam_grid_robot,
    "simulation-bank": fam_bank, "algorithms-coins": fam_coins,
}
UNSEEN_FAMILIES: dict[str, Callable[[random.Random, bool], Variant]] = {
    "algorithms-edit-distance": fam_edit_distance, "strings-run-length": fam_run_length,
    "structures-brackets": fam_brackets, "simulation-automaton": fam_automaton,
}
PER_FAMILY = {"train": 24, "test-seen": 6, "test-unseen": 10}
N_PUBLIC = 3


def _expected(variant: Variant) -> list[Any]:
    """Run the reference solution on every input (our own code, in this process)."""
    if variant.kind == "program":
        import contextlib
        import io
        import sys

        outs = []
        for stdin in variant.inputs:
            buf, old_stdin = io.StringIO(), sys.stdin
            sys.stdin = io.StringIO(stdin)
            try:
                with contextlib.redirect_stdout(buf):
                    exec(compile(variant.solution, "<solution>", "exec"), {"__name__": "__main__"})
            finally:
                sys.stdin = old_stdin
            outs.append(buf.getvalue())
        return outs
    ns: dict[str, Any] = {}
    exec(compile(variant.solution, "<solution>", "exec"), ns)
    fn = ns[variant.name]
    return [fn(*[_copy(a) for a in args]) for args in variant.inputs]


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value)) if isinstance(value, (list, dict)) else value


def _call(name: str, args: tuple) -> str:
    return f"{name}({', '.join(repr(a) for a in args)})"


def build_task(family: str, index: int, suite: str, variant: Variant) -> dict[str, Any]:
    """A Task (as a dict) from a variant: prompt, public and hidden tests, reference solution."""
    expected = _expected(variant)
    if variant.kind == "program":
        tests = [{"stdin": s, "stdout": out} for s, out in zip(variant.inputs, expected)]
        shown = "\n".join(f"Input:\n{t['stdin']}Output:\n{t['stdout']}" for t in tests[:N_PUBLIC])
        what = f"Write a Python program. {variant.spec}\n\nExamples:\n{shown}"
    else:
        tests = [{"code": f"assert {_call(variant.name, args)} == {out!r}"} for args, out in zip(variant.inputs, expected)]
        shown = "\n".join(f"{_call(variant.name, args)} == {out!r}"
                          for args, out in zip(variant.inputs[:N_PUBLIC], expected[:N_PUBLIC]))
        what = f"Write a Python function {variant.signature}. {variant.spec}\n\nExamples:\n{shown}"
    split = "train" if suite == "train" else "test"
    return {
        "id": f"code/{suite}/{family}-{index:03d}", "env": "code-v0", "split": split,
        "prompt": what,
        "data": {"family": family, "kind": variant.kind, "entry_point": variant.name, "params": variant.key,
                 "public_tests": tests[:N_PUBLIC], "hidden_tests": tests[N_PUBLIC:], "test_setup": "",
                 "solution": variant.solution},
        "milestones": MILESTONES, "max_turns": 10,
    }


def generate(seed: int = SEED) -> dict[str, list[dict[str, Any]]]:
    """Every generated suite, deterministic in ``seed``."""
    suites: dict[str, list[dict[str, Any]]] = {"train": [], "test-seen": [], "test-unseen": []}
    plan = [("train", TRAIN_FAMILIES, False), ("test-seen", TRAIN_FAMILIES, True), ("test-unseen", UNSEEN_FAMILIES, False)]
    seen_keys: set[Any] = set()
    for suite, families, held_out in plan:
        for family, make in families.items():
            rng = random.Random(f"{seed}:{suite}:{family}")
            count = attempts = 0
            while count < PER_FAMILY[suite] and attempts < 500:
                attempts += 1
                variant = make(rng, held_out)
                if (family, variant.key) in seen_keys or variant.solution in seen_keys:
                    continue  # the same parameters, or different ones that compute the same thing
                seen_keys.update({(family, variant.key), variant.solution})
                suites[suite].append(build_task(family, count, suite, variant))
                count += 1
    return suites


def write(folder: Path = HERE, seed: int = SEED) -> list[Path]:
    """Write one JSONL file per suite into ``folder``; return their paths."""
    paths = []
    for suite, tasks in generate(seed).items():
        path = folder / f"{suite}.jsonl"
        path.write_text("".join(json.dumps(t, sort_keys=True) + "\n" for t in tasks), encoding="utf-8")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write the suites into")
    parser.add_argument("--seed", type=int, default=SEED, help="generator seed")
    args = parser.parse_args()
    for path in write(args.out, args.seed):
        print(path)


if __name__ == "__main__":
    main()
