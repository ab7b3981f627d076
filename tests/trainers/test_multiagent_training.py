"""Training on a multi-agent environment: per-agent credit (Dr. MAS) and one trained role."""

import pytest

pytestmark = pytest.mark.slow


def test_training_with_per_agent_credit_and_one_trained_agent(tmp_path, tiny_model_dir, tiny_config):
    from agentgym.store import RunStore
    from agentgym.trainers.config import load_config
    from agentgym.trainers.rl import train

    config = tiny_config(tiny_model_dir, tmp_path / "relay", update={"total_steps": 2, "micro_batch_size": 16},
                         rollout={"tasks_per_step": 4, "group_size": 4}, eval={"every": 2},
                         credit={"estimator": "grpo", "per_agent": True})
    config["env"] = {"id": "tiny-relay-v0", "train_suite": "train", "eval_suites": ["test"],
                     "plugins": ["agentgym.trainers.tiny:register_relay"]}
    config["update"]["train_agents"] = ["opener"]
    run = train(load_config(config), progress=False, log=lambda _l: None)
    store = RunStore(run)
    steps = [m for m in store.load_metrics() if "merged_rows" in m]
    assert [m["step"] for m in steps] == [1, 2]
    assert [m["sequences"] for m in steps] == [16, 16]  # the opener's step of each of 16 episodes, not the scout's
    trajs = store.load_trajectories("train-000001")
    assert len(trajs) == 16 and {s.agent for t in trajs for s in t.steps} == {"scout", "opener"}
    assert all(s.response_ids for t in trajs for s in t.steps)  # both roles' tokens recorded, token-exact
    assert any("test/success" in k for m in store.load_metrics() for k in m)
