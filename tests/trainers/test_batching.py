"""Token batching: append-only detection by token prefix, and masks that cover only sampled tokens."""

import math

import pytest

from agentgym.trainers.batching import BatchStats, build_sequences, is_continuation, split
from agentgym.types import Step, StepResult, Trajectory


def _step(t, prompt, resp, *, segment=0, agent="agent", kind="action", logprobs=True):
    return Step(index=t, prompt_ids=prompt, response_ids=resp, segment=segment, agent=agent, kind=kind,
                logprobs=[-0.1 * (k + 1) for k in range(len(resp))] if logprobs else None,
                result=StepResult(observation="o"))


def _traj(steps, i=0):
    return Trajectory(id=f"t{i}", group_id="g", task_id="task", env="e", steps=steps)


def append_only_traj():
    # prompt P=[1,2], responses R0=[10,11], obs O=[3], R1=[12], obs [4,5], R2=[13,14,15]
    s0 = _step(0, [1, 2], [10, 11])
    s1 = _step(1, [1, 2, 10, 11, 3], [12])
    s2 = _step(2, [1, 2, 10, 11, 3, 12, 4, 5], [13, 14, 15])
    return _traj([s0, s1, s2])


def test_append_only_trajectory_is_one_sequence():
    traj = append_only_traj()
    stats = BatchStats()
    seqs = build_sequences([traj], {(0, 0): 1.0, (0, 1): -2.0, (0, 2): 0.5}, stats=stats)
    assert len(seqs) == 1
    s = seqs[0]
    assert s.input_ids == [1, 2, 10, 11, 3, 12, 4, 5, 13, 14, 15]
    assert s.loss_mask == [0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1]
    assert s.advantages == [0, 0, 1.0, 1.0, 0, -2.0, 0, 0, 0.5, 0.5, 0.5]
    assert s.old_logprobs[2:4] == [-0.1, -0.2] and math.isnan(s.old_logprobs[4])
    assert s.rows == [(0, 0), (0, 1), (0, 2)]
    assert stats.merged_rows == 2 and stats.loss_tokens == 6


def test_every_masked_token_is_a_sampled_token():
    traj = append_only_traj()
    for merge in (True, False):
        seqs = build_sequences([traj], {(0, t): 1.0 for t in range(3)}, merge=merge)
        sampled = sorted(tok for s in seqs for tok, m in zip(s.input_ids, s.loss_mask) if m)
        assert sampled == sorted(tok for st in traj.steps for tok in st.response_ids)


def test_without_merge_one_sequence_per_step():
    seqs = build_sequences([append_only_traj()], {(0, t): 1.0 for t in range(3)}, merge=False)
    assert [s.input_ids for s in seqs] == [[1, 2, 10, 11], [1, 2, 10, 11, 3, 12],
                                           [1, 2, 10, 11, 3, 12, 4, 5, 13, 14, 15]]
    assert [s.num_loss_tokens for s in seqs] == [2, 1, 3]


def test_sliding_window_breaks_the_chain():
    s0 = _step(0, [1, 2], [10])
    s1 = _step(1, [1, 2, 10, 3], [11])
    s2 = _step(2, [1, 3, 11, 4], [12])  # window dropped turn 0: not a prefix
    seqs = build_sequences([_traj([s0, s1, s2])], {(0, t): 1.0 for t in range(3)})
    assert [s.rows for s in seqs] == [[(0, 0), (0, 1)], [(0, 2)]]


def test_retokenized_response_breaks_the_chain():
    s0 = _step(0, [1, 2], [10, 11])
    s1 = _step(1, [1, 2, 99, 3], [12])  # the template re-rendered the response as another token
    assert not is_continuation(s0, s1)
    assert len(build_sequences([_traj([s0, s1])], {(0, 0): 1.0, (0, 1): 1.0})) == 2


def test_summary_segments_are_separate_and_summary_tokens_train():
    s0 = _step(0, [1, 2], [10])
    s1 = _step(1, [1, 2, 10, 3, 7], [20, 21], kind="summary")  # summary instruction 7, summary 20 21
    s2 = _step(2, [1, 2, 20, 21, 4], [12], segment=1)
    seqs = build_sequences([_traj([s0, s1, s2])], {(0, t): 1.0 for t in range(3)})
    assert [s.rows for s in seqs] == [[(0, 0), (0, 1)], [(0, 2)]]
    assert seqs[0].loss_mask == [0, 0, 1, 0, 0, 1, 1]


def test_other_agents_and_masked_rows_carry_no_loss():
    s0 = _step(0, [1], [10], agent="solver")
    s1 = _step(1, [1, 10, 2], [11], agent="verifier")
    s2 = _step(2, [1, 10, 2, 11, 3], [12], agent="solver")
    seqs = build_sequences([_traj([s0, s1, s2])], {(0, t): 1.0 for t in range(3)}, train_agents=["solver"])
    assert len(seqs) == 1 and seqs[0].loss_mask == [0, 1, 0, 0, 0, 1]
    seqs = build_sequences([_traj([s0, s1, s2])], {(0, t): 1.0 for t in range(3)}, row_mask={(0, 2): False})
    assert seqs[0].loss_mask == [0, 1, 0, 1, 0, 0]


def test_steps_without_tokens_and_missing_rows_are_skipped():
    s0 = Step(index=0, response="go north")  # a scripted step: no token ids
    s1 = _step(1, [1], [10])
    stats = BatchStats()
    seqs = build_sequences([_traj([s0, s1])], {}, stats=stats)
    assert seqs == [] and stats.skipped_rows == 1


def test_long_sequences_are_dropped_and_counted():
    stats = BatchStats()
    assert build_sequences([append_only_traj()], {(0, t): 1.0 for t in range(3)}, max_len=5, stats=stats) == []
    assert stats.dropped_long == 1


def test_split():
    assert split(list(range(5)), 2) == [[0, 1, 2], [3, 4]]
    assert split([1], 4) == [[1]]


def test_seq_mean_losses_average_per_step_whether_or_not_steps_are_merged():
    """ALGORITHMS.md §8.4: in layout L1 a "sequence" is one step's response, so forwarding an
    append-only trajectory as one sequence must not change the seq-mean losses."""
    import torch

    from agentgym.trainers.loss import AGG_MODES, aggregate
    from agentgym.trainers.model import collate

    one_token = _traj([_step(0, [1], [10]), _step(1, [1, 10, 2], [11]), _step(2, [1, 10, 2, 11, 3], [12])])
    other = _traj([_step(0, [1], [20, 21])], i=1)
    advantages = {(0, 0): 1.0, (0, 1): 1.0, (0, 2): 1.0, (1, 0): -1.0}
    expected = {"seq-mean-token-mean": 0.5, "seq-mean-token-sum": 0.25}  # (1 + 1 + 1 - 1) / 4; (1 + 1 + 1 - 2) / 4
    results = {}
    for merge in (True, False):
        seqs = build_sequences([one_token, other], advantages, merge=merge)
        assert len(seqs) == (2 if merge else 4)
        batch = collate(seqs, 0, "cpu")
        steps = sum(len(s.rows) for s in seqs)
        for agg in AGG_MODES:
            got = aggregate(batch["advantages"], batch["loss_mask"], agg, num_tokens=5, num_seqs=steps,
                            norm_length=8, row_share=batch["row_share"])
            results[merge, agg] = got.item()
            if agg in expected:
                assert got.item() == pytest.approx(expected[agg]), (merge, agg)
            # without a count, the shares count the steps
            assert aggregate(batch["advantages"], batch["loss_mask"], agg, norm_length=8,
                             row_share=batch["row_share"]).item() == pytest.approx(got.item())
    assert all(results[True, agg] == pytest.approx(results[False, agg]) for agg in AGG_MODES)
    assert torch.equal(collate(build_sequences([other], {(0, 0): 1.0}), 0, "cpu")["row_share"],
                       torch.tensor([[0.0, 0.5, 0.5]]))
