"""Action parsing: every supported format, malformed calls, and no input that makes it raise."""

import pytest
from hypothesis import given, settings, strategies as st

from agentgym.parsing import keyword_action, parse_action
from agentgym.types import ToolCall


def test_hermes_block_with_surrounding_text():
    p = parse_action('I will add.\n<tool_call>\n{"name": "add", "arguments": {"n": 3}}\n</tool_call>')
    assert p.call is not None and p.call.name == "add" and p.call.arguments == {"n": 3}
    assert p.text == "I will add."


def test_hermes_tool_calls_as_a_server_parser_returns_them():
    from agentgym.parsing import hermes_tool_calls

    text = ('Sure. <tool_call>{"name": "a", "arguments": {"x": 1}}</tool_call>\n'
            '<tool_call>[{"name": "b", "arguments": {}}, {"name": "c", "arguments": "{\\"y\\": 2}"}]</tool_call>')
    calls, rest = hermes_tool_calls(text)
    assert [(c.name, c.arguments) for c in calls] == [("a", {"x": 1}), ("b", {}), ("c", {"y": 2})] and rest == "Sure."
    for text in ("no call", "<tool_call>{not json</tool_call>", "<tool_call>[]</tool_call>",
                 '<tool_call>{"name": "a"}</tool_call> <tool_call>{"arguments": {}}</tool_call>'):
        assert hermes_tool_calls(text) is None  # all or nothing: the text then stays content


def test_hermes_block_without_closing_tag():
    p = parse_action('<tool_call>{"name": "look", "arguments": {}}')
    assert p.call is not None and p.call.name == "look"


def test_openai_function_object_with_string_arguments():
    p = parse_action('{"id": "call_7", "type": "function", "function": {"name": "add", "arguments": "{\\"n\\": 2}"}}')
    assert p.call is not None
    assert (p.call.name, p.call.arguments, p.call.id) == ("add", {"n": 2}, "call_7")


def test_openai_tool_calls_list_in_code_fence():
    p = parse_action('Here:\n```json\n{"tool_calls": [{"function": {"name": "go", "arguments": {"to": "x"}}}]}\n```')
    assert p.call is not None and p.call.name == "go" and p.call.arguments == {"to": "x"}


def test_compact_form_with_literals_and_bare_words():
    p = parse_action("take(obj='mug 1', count=2, where=kitchen)", tool_names=["take"])
    assert p.call is not None
    assert p.call.arguments == {"obj": "mug 1", "count": 2, "where": "kitchen"}


def test_compact_form_for_unknown_name_is_an_answer():
    p = parse_action("Sure (I think)", tool_names=["add"])
    assert p.is_answer and p.text == "Sure (I think)"
    for prose in ("Maybe(later)", "Sure (x=1)", "f(x=1) and g(y=2)", "len(x)==len(y=2)"):
        assert parse_action(prose, tool_names=["add"]).is_answer


def test_a_compact_call_to_an_unknown_tool_is_a_call_the_environment_can_refuse():
    p = parse_action("jump(height=2)", tool_names=["add"])
    assert p.call == ToolCall(name="jump", arguments={"height": 2})


def test_plain_text_is_an_answer():
    p = parse_action("  go to cabinet 1  ")
    assert p.is_answer and p.text == "go to cabinet 1"


def test_malformed_json_in_block_is_an_error_not_an_answer():
    p = parse_action('<tool_call>{"name": "add", "arguments": {n: 3}}</tool_call>')
    assert p.call is None and p.error is not None and "JSON" in p.error


def test_arguments_must_be_an_object():
    p = parse_action('{"name": "add", "arguments": [1, 2]}')
    assert p.call is None and "JSON object" in p.error


def test_compact_positional_arguments_are_rejected_with_a_hint():
    p = parse_action("add(3)", tool_names=["add"])
    assert p.call is None and "keyword" in p.error


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_no_string_makes_the_parser_raise(text):
    parse_action(text, tool_names=["add", "go"])
    parse_action(text)


_fragments = st.sampled_from(['<tool_call>', '</tool_call>', '{', '}', '"name"', '"arguments"', ':', '"add"', '[',
                              ']', '(', ')', 'add', '=', ',', '```', '```json', '"function"', '"tool_calls"', "'",
                              '1e999', 'None', '"', '\\', '\n', ' '])


@settings(max_examples=400, deadline=None)
@given(st.lists(_fragments, max_size=30).map("".join))
def test_no_call_shaped_string_makes_the_parser_raise(text):
    result = parse_action(text, tool_names=["add"])
    assert result.call is None or isinstance(result.call.arguments, dict)


@pytest.mark.parametrize("text, call", [
    ("search[red mug]", ToolCall(name="search", arguments={"query": "red mug"})),
    ("Action: Click(Next >)\nbecause", ToolCall(name="click", arguments={"element": "Next >"})),
    ("click: 'Buy Now'.", ToolCall(name="click", arguments={"element": "Buy Now"})),
    ("\n  SEARCH  blue shoes", ToolCall(name="search", arguments={"query": "blue shoes"})),
])
def test_keyword_actions_read_the_first_line(text, call):
    assert keyword_action(text, {"search": "query", "click": "element"}) == call


def test_keyword_actions_need_a_known_keyword_at_the_start():
    names = {"search": "query", "click": "element"}
    assert keyword_action("I would click it", names) is None
    assert keyword_action("searching for shoes", names) is None  # a whole word, not a prefix
    assert keyword_action("", names) is None
