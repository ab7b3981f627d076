"""Regenerate the web shop's catalog and task suites: ``python -m agentgym.tasks.webshop.generate``.

Writes, beside this file (or into ``--out``), from a fixed seed and no outside data:

- ``catalog.jsonl.gz``: 1,200 products in 12 categories (title, price, rating, attributes,
  options such as color and size, description and feature bullets);
- ``train.jsonl``, ``test-seen.jsonl``, ``test-unseen.jsonl``: shopping instructions, each made
  from one product (``i need a waterproof backpack in black, 30 l, price lower than 60.00
  dollars``); any product that meets it earns full reward.

What an instruction asks for (its category and attributes) is its kind. A fifth of the kinds
(chosen by a hash) are held out: only ``test-unseen`` asks for them; ``test-seen`` asks for
kinds that ``train`` has, with other options and prices. ``--check`` compares a fresh generation
with the files in ``--out`` and exits 1 when they differ.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
from itertools import zip_longest
from pathlib import Path

from agentgym.tasks import to_jsonl, write_generated
from agentgym.tasks.webshop import CATALOG

ENV_ID = "webshop-v0"
HERE = Path(__file__).resolve().parent
SEED = 20261205
MAX_TURNS = 15
PRODUCTS_PER_CATEGORY = 100
HELD_OUT_PERCENT = 20
# suite: (task split, kinds it may ask for, how many)
SUITES = {"test-seen": ("test", "seen", 200), "test-unseen": ("test", "unseen", 200), "train": ("train", "seen", 1500)}

COLORS = ["black", "white", "navy blue", "gray", "red", "green", "beige", "pink", "brown", "light blue", "olive",
          "purple"]
APPAREL = ["x-small", "small", "medium", "large", "x-large", "xx-large"]
SHOES = ["size 6", "size 7", "size 8", "size 9", "size 10", "size 11", "size 12"]
# category: (noun in titles, price range, (second option's name, its values) or None, attributes)
CATEGORIES: dict[str, tuple[str, tuple[int, int], tuple[str, list[str]] | None, list[str]]] = {
    "t-shirt": ("T-Shirt", (8, 40), ("size", APPAREL),
                ["cotton", "organic cotton", "slim fit", "relaxed fit", "v-neck", "crew neck", "moisture wicking",
                 "machine washable", "long sleeve"]),
    "hoodie": ("Hoodie", (20, 80), ("size", APPAREL),
               ["fleece lined", "zip up", "pullover", "heavyweight", "lightweight", "machine washable",
                "kangaroo pocket", "oversized"]),
    "running shoes": ("Running Shoes", (35, 150), ("size", SHOES),
                      ["lightweight", "breathable mesh", "non slip", "wide toe box", "memory foam", "waterproof",
                       "arch support"]),
    "hiking boots": ("Hiking Boots", (50, 200), ("size", SHOES),
                     ["waterproof", "ankle support", "rubber sole", "leather", "insulated", "lightweight", "non slip"]),
    "backpack": ("Backpack", (20, 120), ("capacity", ["20 l", "30 l", "40 l"]),
                 ["waterproof", "laptop compartment", "usb charging port", "anti theft", "lightweight",
                  "padded straps", "carry on size"]),
    "water bottle": ("Water Bottle", (8, 45), ("capacity", ["12 oz", "20 oz", "32 oz", "40 oz"]),
                     ["stainless steel", "vacuum insulated", "bpa free", "leak proof", "dishwasher safe", "straw lid",
                      "wide mouth"]),
    "coffee mug": ("Coffee Mug", (6, 30), ("capacity", ["10 oz", "12 oz", "16 oz"]),
                   ["ceramic", "microwave safe", "dishwasher safe", "insulated", "travel", "handmade", "large handle"]),
    "desk lamp": ("Desk Lamp", (15, 90), None,
                  ["led", "dimmable", "usb charging port", "touch control", "adjustable arm", "eye caring",
                   "clamp mount"]),
    "headphones": ("Headphones", (15, 250), None,
                   ["wireless", "noise cancelling", "over ear", "foldable", "built in microphone",
                    "long battery life", "bluetooth"]),
    "phone case": ("Phone Case", (7, 40), ("model", ["iphone 15", "iphone 15 pro", "galaxy s24", "pixel 8"]),
                   ["shockproof", "slim", "clear", "magsafe compatible", "card holder", "kickstand"]),
    "yoga mat": ("Yoga Mat", (15, 80), ("thickness", ["4 mm", "6 mm", "8 mm", "10 mm"]),
                 ["non slip", "eco friendly", "extra thick", "carrying strap", "natural rubber", "sweat resistant"]),
    "pillow cover": ("Pillow Cover", (8, 35), ("size", ["16 x 16 inch", "18 x 18 inch", "20 x 20 inch"]),
                     ["velvet", "linen", "machine washable", "hidden zipper", "boho", "farmhouse", "set of 2"]),
}
BRANDS = ["Northpeak", "Lumora", "Vantro", "Kessley", "Aurabay", "Tidewell", "Ferrow", "Quillon", "Brisco",
          "Maplestone", "Oxden", "Selvane", "Corvix", "Havenly", "Drumlin", "Ostara", "Wrenfield", "Zephra",
          "Calder", "Birchmont", "Solvik", "Tamsin", "Greyloft", "Orrin", "Palisade", "Juniper Lane", "Kitewood",
          "Marlowe", "Nettlefield", "Rosedale"]
PHRASES = [  # how an attribute reads in a description
    "It is {a}.", "Buyers choose it because it is {a}.", "Made to be {a}.", "Every one is {a}.",
]
INSTRUCTIONS = [
    "i need {article} {attrs} {category}{options}, and price lower than {price} dollars",
    "i am looking for {article} {attrs} {category}{options} that costs less than {price} dollars",
    "find me {article} {attrs} {category}{options} under {price} dollars",
    "i want to buy {article} {attrs} {category}{options}, priced below {price} dollars",
]


def held_out(kind: str) -> bool:
    """Whether an instruction kind (category and attributes) belongs to test-unseen: a stable hash of it."""
    return int(hashlib.sha256(f"agentgym-webshop:{kind}".encode()).hexdigest(), 16) % 100 < HELD_OUT_PERCENT


def _title_case(words: str) -> str:
    return " ".join(w if any(c.isdigit() for c in w) else w[:1].upper() + w[1:] for w in words.split())


def build_catalog(rng: random.Random) -> list[dict]:
    """Products of every category, with unique titles and ids."""
    products: list[dict] = []
    titles: set[str] = set()
    for category, (noun, (low, high), option, attributes) in CATEGORIES.items():
        made = 0
        while made < PRODUCTS_PER_CATEGORY:
            attrs = rng.sample(attributes, rng.randint(2, 4))
            brand = rng.choice(BRANDS)
            title = f"{brand} {_title_case(attrs[0])} {_title_case(attrs[1])} {noun}"
            if len(attrs) > 2:
                title += f", {_title_case(attrs[2])}"
            if title.lower() in titles:
                continue
            titles.add(title.lower())
            made += 1
            options = {"color": sorted(rng.sample(COLORS, rng.randint(2, 5)), key=COLORS.index)}
            if option is not None:
                name, values = option
                n = rng.randint(2, len(values))
                start = rng.randint(0, len(values) - n)
                options[name] = values[start:start + n]
            price = round(rng.uniform(low, high)) - 0.01
            described = attrs[:]
            rng.shuffle(described)
            description = " ".join([f"The {brand} {category} for every day."]
                                   + [rng.choice(PHRASES).format(a=a) for a in described]
                                   + [f"Available in {', '.join(options['color'])}."])
            products.append({
                "asin": "B0" + hashlib.sha256(title.encode()).hexdigest()[:8].upper(), "title": title,
                "category": category, "brand": brand, "price": price, "rating": round(rng.uniform(3.0, 5.0), 1),
                "attributes": sorted(attrs), "options": options, "description": description,
                "features": [f"{_title_case(a)}: {rng.choice(['yes', 'built in', 'included', 'guaranteed'])}"
                             for a in attrs],
            })
    return products


def _milestones() -> list[dict]:
    from agentgym.environments.webshop.env import MILESTONES

    return [m.model_dump() for m in MILESTONES]


def make_goal(product: dict, rng: random.Random) -> dict:
    """An instruction that ``product`` meets: some of its attributes, one value of each option, a price above its own."""
    attributes = sorted(rng.sample(product["attributes"], rng.randint(1, 2)))
    options = {name: rng.choice(values) for name, values in product["options"].items()}
    price_max = float(math.ceil((product["price"] + rng.uniform(1, 20)) / 10) * 10)
    shown = ", ".join(f"{options[n]} thick" if n == "thickness" else options[n]
                      for n in sorted(options, key=lambda n: n != "color"))
    attrs = " and ".join(attributes)
    text = rng.choice(INSTRUCTIONS).format(article="an" if attrs[0] in "aeiou" else "a", attrs=attrs,
                                           category=product["category"], options=f" in {shown}",
                                           price=f"{price_max:.2f}")
    return {"instruction": text, "category": product["category"], "attributes": attributes, "options": options,
            "price_max": price_max}


def build_suites(products: list[dict], rng: random.Random) -> dict[str, list[dict]]:
    """Instructions for each suite; no instruction text is in two suites, and kinds split as the docstring says."""
    milestones = _milestones()
    used: set[str] = set()
    kinds_in_train: set[str] = set()
    suites: dict[str, list[dict]] = {}
    for suite in ("train", "test-unseen", "test-seen"):  # test-seen last: it asks for kinds train has
        split, which, size = SUITES[suite]
        by_category: dict[str, list[dict]] = {c: [] for c in CATEGORIES}
        attempts = 0
        while sum(map(len, by_category.values())) < size:
            attempts += 1
            if attempts > size * 200:
                raise RuntimeError(f"cannot make {size} distinct tasks for {suite}")
            product = rng.choice(products)
            goal = make_goal(product, rng)
            kind = f"{goal['category']}|{'|'.join(goal['attributes'])}"
            if held_out(kind) != (which == "unseen") or goal["instruction"] in used:
                continue
            if suite == "test-seen" and kind not in kinds_in_train:
                continue
            if len(by_category[goal["category"]]) >= math.ceil(size / len(CATEGORIES)):
                continue
            used.add(goal["instruction"])
            if suite == "train":
                kinds_in_train.add(kind)
            instruction = goal.pop("instruction")  # the task's prompt
            by_category[goal["category"]].append({"goal": goal, "asin": product["asin"], "prompt": instruction})
        # categories take turns, so the first N tasks of a suite span them all
        rows = [r for group in zip_longest(*by_category.values()) for r in group if r is not None]
        suites[suite] = [{
            "id": f"webshop-{suite}-{i:04d}", "env": ENV_ID, "split": split, "prompt": row.pop("prompt"),
            "max_turns": MAX_TURNS, "milestones": milestones, "data": row} for i, row in enumerate(rows)]
    return suites


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write (default: beside this file)")
    parser.add_argument("--check", action="store_true", help="only compare with the files in --out")
    args = parser.parse_args(argv)
    rng = random.Random(SEED)
    products = build_catalog(rng)
    suites = build_suites(products, rng)
    files = {CATALOG: to_jsonl(products), **{f"{name}.jsonl": to_jsonl(rows) for name, rows in suites.items()}}
    return write_generated(files, args.out, check=args.check, command="python -m agentgym.tasks.webshop.generate")


if __name__ == "__main__":
    sys.exit(main())
