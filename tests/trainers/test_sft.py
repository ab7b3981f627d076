"""SFT warm start: the one deliberate re-tokenization, its masks, and that it teaches the tiny model."""

import pytest

pytest.importorskip("torch")

from agentgym.trainers.config import load_config, SFTConfig  # noqa: E402


@pytest.fixture()
def tiny_policy(tiny_model_dir):
    from agentgym.policies.hf import TransformersPolicy

    return TransformersPolicy(tiny_model_dir, max_batch_size=64)


def _expert(doors, tmp_path, n_tasks=6):
    from agentgym.registry import load_tasks
    from agentgym.rollout import RolloutRunner

    runner = RolloutRunner("expert", n=1, system_prompt=None, store=tmp_path / "expert")
    return runner.run_sync(load_tasks(doors, "train")[:n_tasks]).trajectories


def test_samples_render_like_the_policy_and_mask_all_but_the_response(doors, tmp_path, tiny_policy):
    from agentgym.registry import make
    from agentgym.trainers.sft import build_samples

    trajs = _expert(doors, tmp_path)
    assert all(t.success for t in trajs) and all(s.prompt_ids is None for t in trajs for s in t.steps)
    samples = build_samples(trajs, tiny_policy, merge=False)
    assert len(samples) == sum(len(t.steps) for t in trajs)
    tok, tools = tiny_policy.tokenizer, make(doors).tools
    for s in samples:
        i, t = s.rows[0]
        step = trajs[i].steps[t]
        prompt = tiny_policy.render(step.messages, tools)
        assert s.input_ids[:len(prompt)] == prompt and s.loss_mask[:len(prompt)] == [0.0] * len(prompt)
        target = [x for x, m in zip(s.input_ids, s.loss_mask) if m]
        assert target == tok(step.response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert tok.decode(target, skip_special_tokens=True) == step.response


@pytest.mark.parametrize("tool_schema", [True, False])
def test_append_only_turns_merge_into_one_sequence_per_trajectory(doors, tmp_path, tiny_policy, tool_schema):
    from agentgym.registry import make
    from agentgym.trainers.sft import build_samples

    trajs = _expert(doors, tmp_path)
    assert any(len(t.steps) > 1 for t in trajs)
    samples = build_samples(trajs, tiny_policy, tool_schema=tool_schema)
    assert len(samples) == len(trajs)  # full context is append-only: one sequence each
    tok, tools = tiny_policy.tokenizer, make(doors).tools if tool_schema else []
    for s, traj in zip(samples, trajs):
        assert s.rows == [(s.trajectory, t) for t in range(len(traj.steps))]
        last = traj.steps[-1]
        assert s.input_ids[:len(tiny_policy.render(last.messages, tools))] == tiny_policy.render(last.messages, tools)
        target = [x for x, m in zip(s.input_ids, s.loss_mask) if m]
        expected = [x for step in traj.steps
                    for x in tok(step.response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]]
        assert target == expected
    unmerged = build_samples(trajs, tiny_policy, tool_schema=tool_schema, merge=False)
    assert sum(len(s) for s in samples) < sum(len(s) for s in unmerged)
    assert sum(s.num_loss_tokens for s in samples) == sum(s.num_loss_tokens for s in unmerged)


def test_roles_taking_turns_merge_into_one_sequence_each(tmp_path, tiny_policy):
    import agentgym as ag
    from agentgym.rollout import RolloutRunner
    from agentgym.trainers.sft import build_samples
    from agentgym.trainers.tiny import Doors

    class TakingTurns(Doors):  # the doors, opened by two roles in turn, each with its own conversation
        agents = {"left": "", "right": ""}

        def current_agent(self) -> str:
            return ("left", "right")[self.turn % 2]

    ag.register("turns-doors-v0", TakingTurns)
    task = ag.Task(id="t", env="turns-doors-v0", data={"colors": ["red", "blue", "green", "red"]}, max_turns=8)
    (traj,) = RolloutRunner("expert", system_prompt=None).run_sync([task]).trajectories
    assert traj.success and [s.agent for s in traj.steps] == ["left", "right"] * 2
    samples = build_samples([traj], tiny_policy)
    assert sorted(s.rows for s in samples) == [[(0, 0), (0, 2)], [(0, 1), (0, 3)]]


def test_a_merged_sequence_never_passes_max_seq_len(doors, tmp_path, tiny_policy):
    from agentgym.trainers.sft import build_samples

    trajs = _expert(doors, tmp_path)
    whole = max(len(s) for s in build_samples(trajs, tiny_policy))
    capped = build_samples(trajs, tiny_policy, max_seq_len=whole - 1)
    assert max(len(s) for s in capped) <= whole - 1
    assert sum(len(s.rows) for s in capped) == sum(len(t.steps) for t in trajs)


def test_sft_teaches_the_tiny_model(doors, tmp_path, tiny_model_dir, tiny_config):
    from agentgym.trainers.sft import run_sft

    cfg = tiny_config(tiny_model_dir, tmp_path / "sft")
    cfg.pop("update"), cfg.pop("checkpoint"), cfg.pop("loss"), cfg.pop("optim"), cfg.pop("credit")
    cfg["sft"] = {"expert_tasks": 12, "epochs": 30, "lr": 2e-3, "batch_size": 4, "micro_batch_size": 4}
    cfg["eval"] = {"every": 1}
    config = load_config(cfg, kind=SFTConfig)
    run_dir = run_sft(config, progress=False, log=lambda _line: None)
    from agentgym.store import RunStore

    metrics = RunStore(run_dir).load_metrics()
    assert metrics[0]["sft_loss_last"] < 0.5 * metrics[0]["sft_loss_first"]
    assert metrics[1]["eval/test/success"] >= 0.75
    assert (run_dir / "model" / "config.json").exists() and (run_dir / "trajectories" / "expert.jsonl").exists()
