"""The data model: the unchecked constructor the rollout engine uses equals validated construction."""

from agentgym.types import Message, Step, StepResult, ToolCall, Trajectory, unchecked


def test_unchecked_equals_validated_construction_and_round_trips():
    record = {"index": 2, "kind": "action", "segment": 1, "state_key": "room-3",
              "messages": [Message(role="system", content="s"), Message(role="user", content="o")],
              "response": "look", "action": ToolCall(name="act", arguments={"command": "look"}),
              "parse_error": None, "result": StepResult(observation="You see a desk.", reward=0.5, valid=True),
              "timings": {"policy_s": 0.1, "env_s": 0.2}}
    fast, checked = unchecked(Step, record), Step(**record)
    assert fast == checked and fast.model_fields_set == checked.model_fields_set
    assert fast.model_dump_json() == checked.model_dump_json()
    assert Step.model_validate_json(fast.model_dump_json()) == checked
    traj = unchecked(Trajectory, {"id": "t", "group_id": "g", "task_id": "k", "env": "e", "steps": [fast]})
    assert Trajectory.model_validate_json(traj.model_dump_json()) == traj


def test_unchecked_fills_defaults_with_fresh_mutables():
    a, b = unchecked(Step, {"index": 0}), unchecked(Step, {"index": 1})
    assert a == Step(index=0) and a.model_fields_set == {"index"}
    a.timings["x"] = 1.0
    assert b.timings == {}  # default_factory runs per instance
    m = unchecked(Message, {"role": "user", "content": "hi"})
    assert m == Message(role="user", content="hi") and m.to_openai() == {"role": "user", "content": "hi"}
