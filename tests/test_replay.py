"""`agentgym replay`: a run directory served over real HTTP and replayed in a real Chromium."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

import agentgym as ag
from agentgym.credit import compute
from agentgym.errors import ConfigError
from agentgym.replay import ReplayServer, RunView
from agentgym.rollout import RolloutRunner
from agentgym.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
XSS = '<img src=x onerror="document.title=\'pwned\'">'
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """An RL run's directory as the trainer leaves it: two steps' batches, the second after a resume that
    changed the credit settings; metrics; an evaluation; and a file of episodes whose texts are HTML
    that must stay text, one of them failed before its first step."""
    from agentgym.trainers.config import load_config

    root = tmp_path_factory.mktemp("replay") / "run"
    store = RunStore(root)
    config = load_config(ROOT / "examples" / "household_quickstart.yaml",
                         ["credit.estimator=grpo", "credit.milestones=bonus", "update.advantage_sign=-1",
                          f"run_dir={root}"])
    store.write_config(config)  # the latest settings; step 1 ran with the old ones
    store.append_config_change({"step": 1, "changes": {"credit.estimator": ["gigpo", "grpo"],
                                                       "update.advantage_sign": [1, -1]}})
    train = ag.load_tasks("household-v0", "easy-train")[:3]
    RolloutRunner("random", n=4, max_turns=6, store=store, store_name="train-000001", seed=3).run_sync(train)
    for t in store.load_trajectories("train-000001"):
        store.append_trajectory(t, "train-000002")
    test = ag.load_tasks("household-v0", "easy-test-unseen")[:2]
    RolloutRunner("expert", store=store, store_name="eval-easy-test-unseen-000001").run_sync(test)
    store.append_metrics({"step": 1, "success": 0.25, "rows": 40, "loss": float("nan")})
    store.append_metrics({"step": 2, "success": 0.5})
    crafted = store.load_trajectories("eval-easy-test-unseen-000001")[0]
    crafted.task_id = XSS
    crafted.steps[0].response = crafted.steps[0].result.observation = XSS
    store.append_trajectory(crafted, "crafted")
    store.append_trajectory(crafted.model_copy(update={"id": "failed", "steps": [], "error": XSS}), "crafted")
    # a step as the model samples it: token ids (of the run's model, smollm2) and their logprobs
    sampled = store.load_trajectories("eval-easy-test-unseen-000001")[1]
    ids = _smollm2_tokenizer().encode(sampled.steps[0].response + "<|im_end|>", add_special_tokens=False).ids
    sampled.steps[0].response_ids, sampled.steps[0].logprobs = ids, [-0.01 * (k + 1) for k in range(len(ids))]
    store.append_trajectory(sampled, "sampled")
    return root


def _smollm2_tokenizer():
    from tokenizers import Tokenizer

    from agentgym.policies.hf import smollm2_path

    return Tokenizer.from_file(str(smollm2_path() / "tokenizer.json"))


async def _get(url: str) -> tuple[int, object]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_the_api_serves_files_episodes_and_the_trainers_advantages(run_dir):
    from agentgym.trainers.config import load_config

    store = RunStore(run_dir)
    batch = store.load_trajectories("train-000001")
    async with ReplayServer(run_dir, port=0) as server:
        status, run = await _get(server.url + "api/run")
        assert status == 200 and run["kind"] == "train" and run["name"] == "run"
        assert [(f["name"], f["kind"], f["episodes"]) for f in run["files"]] == [
            ("train-000001", "train", 12), ("train-000002", "train", 12), ("crafted", "other", 2),
            ("sampled", "other", 1), ("eval-easy-test-unseen-000001", "eval", 2)]
        assert run["files"][0]["success_rate"] == sum(t.success for t in batch) / 12
        assert run["metrics"][0] == {"step": 1, "success": 0.25, "rows": 40, "loss": None}  # NaN is not JSON
        _, episodes = await _get(server.url + "api/files/train-000001")
        assert [(e["id"], e["turns"], e["success"]) for e in episodes] == [(t.id, t.num_turns, t.success) for t in batch]
        assert sum(e["invalid"] for e in episodes) == sum(not s.valid for t in batch for s in t.steps)

        latest = load_config(store.read_config())
        for name, estimator, sign, note in [
                ("train-000001", "gigpo", 1, "gigpo advantages and loss masks of credit assignment, recomputed with "
                                             "the settings step 1 ran with"),
                ("train-000002", "grpo", -1, "this step has no metrics yet: its batch may be incomplete")]:
            credit = compute(batch, latest.credit.model_copy(update={"estimator": estimator}),
                             tasks=ag.load_tasks("household-v0", "easy-train"))
            expected = {(int(i), int(j)): sign * a
                        for i, j, a in zip(credit.traj_index, credit.step_index, credit.advantages)}
            assert any(a != 0 for a in expected.values())  # random play: some steps did better than others
            step_parts: list[float] = []
            for i, traj in enumerate(batch):
                _, episode = await _get(server.url + f"api/files/{name}/{i}")
                assert episode["id"] == traj.id and note in episode["advantage_note"]
                assert [s["response"] for s in episode["steps"]] == [s.response for s in traj.steps]
                assert [s["advantage"] for s in episode["steps"]] == pytest.approx(
                    [expected[i, j] for j in range(len(traj.steps))])
                assert all(s["loss_mask"] is True and "prompt_ids" not in s for s in episode["steps"])
                anchors = [s["anchor_steps"] for s in episode["steps"]]
                if estimator != "gigpo":
                    assert anchors == [s["episode_advantage"] for s in episode["steps"]] == [None] * len(anchors)
                    continue
                # A = A^E + ω·A^S: the episode part is one value per trajectory (but for invalid steps' penalty)
                assert len({round(s["episode_advantage"], 9) for s, t in zip(episode["steps"], traj.steps)
                            if t.valid}) <= 1
                step_parts += [s["advantage"] - s["episode_advantage"] for s in episode["steps"]]
                # GiGPO's anchor group: the steps of the same task group acting from the same state
                assert anchors == [sum(o.state_key == s.state_key for u in batch if u.group_id == traj.group_id
                                       for o in u.steps) for s in traj.steps]
                assert anchors[0] >= 4  # the group's 4 samples all start from the same state
                # a state no other step shares gets no step-level part: A = A^E
                assert all(s["advantage"] == pytest.approx(s["episode_advantage"])
                           for s in episode["steps"] if s["anchor_steps"] == 1)
            assert estimator != "gigpo" or any(abs(p) > 1e-6 for p in step_parts)  # some states told steps apart
        _, evaluated = await _get(server.url + "api/files/eval-easy-test-unseen-000001/0")
        assert evaluated["advantage_note"] == "" and evaluated["steps"][0]["advantage"] is None
        assert evaluated["steps"][0]["response_token_texts"] is None  # a scripted policy samples no tokens
        _, sampled = await _get(server.url + "api/files/sampled/0")
        texts = sampled["steps"][0]["response_token_texts"]
        assert "".join(texts) == sampled["steps"][0]["response"] + "<|im_end|>" and len(texts) > 3
        assert len(texts) == sampled["steps"][0]["response_tokens"] == len(sampled["steps"][0]["logprobs"])


async def test_unknown_files_and_episodes_are_404_and_only_trajectory_files_are_read(run_dir):
    async with ReplayServer(run_dir, port=0) as server:
        for path in ["api/files/nope", "api/files/..%2Fmetrics", "api/files/train-000001/12", "api/files/config/0"]:
            status, body = await _get(server.url + path)
            assert status == 404 and body["error"].startswith("not found"), path
        assert body["error"] == "not found: the run has no trajectory file 'config'"
        _, body = await _get(server.url + "api/files/train-000001/12")
        assert body["error"] == "not found: train-000001 has 12 episodes (0 to 11), not 12"


async def test_a_bad_file_is_reported_and_the_rest_of_the_run_still_shows(run_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "trajectories" / "notes.jsonl").write_text('{"not": "a trajectory"}\n')
    with open(broken / "metrics.jsonl", "a") as fh:
        fh.write("[1, 2]\n")  # whole JSON, but no record
    with open(broken / "config.yaml", "a") as fh:
        fh.write("extra: .nan\n")
    async with ReplayServer(broken, port=0) as server:
        status, run = await _get(server.url + "api/run")
        assert status == 200 and run["config"]["extra"] is None and len(run["metrics"]) == 2
        (notes,) = [f for f in run["files"] if f["name"] == "notes"]
        assert "notes.jsonl, line 1: not a trajectory" in notes["error"] and len(run["files"]) == 6
        status, body = await _get(server.url + "api/files/notes")
        assert status == 500 and "not a trajectory" in body["error"]
    with pytest.raises(RuntimeError, match="closed; create a new one"):
        await server.start()


async def test_a_batch_that_grows_is_read_again_with_its_advantages_and_a_torn_line_is_skipped(run_dir, tmp_path):
    from agentgym.trainers.evaluate import run_config

    live = tmp_path / "live"
    shutil.copytree(run_dir, live)
    store = RunStore(live)
    batch = store.load_trajectories("train-000001")
    async with ReplayServer(live, port=0) as server:
        _, before = await _get(server.url + "api/files/train-000001/0")
        extra = batch[0].model_copy(update={"id": "extra", "success": not batch[0].success}, deep=True)
        extra.steps[-1].result = extra.steps[-1].result.model_copy(update={"reward": 5.0})
        store.append_trajectory(extra, "train-000001")
        with open(live / "trajectories" / "train-000001.jsonl", "a") as fh:
            fh.write(batch[1].model_dump_json()[:100])  # a writer killed mid-line
        _, episodes = await _get(server.url + "api/files/train-000001")
        assert [e["id"] for e in episodes] == [t.id for t in batch] + ["extra"]
        _, run = await _get(server.url + "api/run")
        assert [f["episodes"] for f in run["files"] if f["name"] == "train-000001"] == [13]
        _, after = await _get(server.url + "api/files/train-000001/0")  # its group now holds a better sample
        credit = compute([*batch, extra], run_config(live, 1).credit, tasks=ag.load_tasks("household-v0", "easy-train"))
        assert after["steps"][0]["advantage"] == pytest.approx(credit.advantages[0])
        assert after["steps"][0]["advantage"] != pytest.approx(before["steps"][0]["advantage"])


def test_a_path_that_is_not_a_run_directory_is_refused_and_left_alone(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for name in ("grpo", "gigpo"):
        (tmp_path / "bench" / name / "trajectories").mkdir(parents=True)
    (tmp_path / "bench" / "grpo" / "trajectories" / "rollout.jsonl").write_text("")
    for path, message in [(tmp_path / "missing", "does not exist"), (tmp_path / "file.txt", "is a file"),
                          (tmp_path / "empty", "has neither trajectories/ nor config.yaml"),
                          (tmp_path / "bench", "not a run directory .*; the runs in it: gigpo, grpo$"),
                          (tmp_path / "bench" / "grpo" / "trajectories", "give the run directory .*/bench/grpo$")]:
        with pytest.raises(ConfigError, match=message):
            RunView(path)
    assert not (tmp_path / "missing").exists() and list((tmp_path / "empty").iterdir()) == []
    (tmp_path / "starting").mkdir()  # a run that has written its config and nothing else yet
    (tmp_path / "starting" / "config.yaml").write_text("command: rollout\n")
    assert RunView(tmp_path / "starting").run()["files"] == [] and RunView(tmp_path / "starting").run()["kind"] == "rollout"
    assert sorted(p.name for p in (tmp_path / "starting").iterdir()) == ["config.yaml"]
    (tmp_path / "starting" / "config.yaml").write_text("command: [rollout\n")  # damaged by hand
    assert RunView(tmp_path / "starting").run()["files"] == []  # the page still shows the episodes


def _agentgym(*args: str) -> subprocess.Popen:
    # SIGINT back to its default, so the child sees Ctrl-C as a user's shell would send it
    return subprocess.Popen([sys.executable, "-m", "agentgym", "replay", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "300"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


async def test_the_replay_command_serves_until_ctrl_c_and_says_what_is_wrong(run_dir, tmp_path):
    proc = _agentgym(str(run_dir), "--port", "0")
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"replaying {run_dir} at http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200 and "<title>agentgym replay</title>" in await response.text()
        port = url.rsplit(":", 1)[1].strip("/")
        busy = _agentgym(str(run_dir), "--port", port)
        assert busy.wait(timeout=60) == 1
        assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr.read()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    missing = _agentgym(str(tmp_path / "nope"))
    assert missing.wait(timeout=60) == 2 and "does not exist" in missing.stderr.read()


@pytest.fixture(scope="module")
def chromium():
    playwright = pytest.importorskip("playwright.async_api", reason="the replay page test needs playwright "
                                     "(pip install 'agentgym[web]')")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    return playwright


async def test_the_page_replays_an_episode_step_by_step_in_chromium(run_dir, chromium):
    batch = RunStore(run_dir).load_trajectories("train-000001")
    view = RunView(run_dir)
    # an episode whose second step got a fractional advantage, to see it on the page
    index = next(i for i, t in enumerate(batch) if len(t.steps) > 2
                 and view.episode("train-000001", i)["steps"][1]["advantage"] % 1)
    traj, advantage = batch[index], view.episode("train-000001", index)["steps"][1]["advantage"]
    traj_sampled = RunStore(run_dir).load_trajectories("sampled")[0]
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync"]
    async with ReplayServer(run_dir, port=0) as server, chromium.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(server.url)
            await page.locator(f'#episodes li.ep[data-index="{index}"]').click()
            await page.locator("#response").wait_for()
            assert await page.locator("#response").text_content() == traj.steps[0].response
            await page.keyboard.press("ArrowRight")
            assert await page.locator("h2", has_text="Step 2 of").text_content() == f"Step 2 of {len(traj.steps)}"
            assert await page.locator("#response").text_content() == traj.steps[1].response
            assert await page.locator("#observation").text_content() == traj.steps[1].result.observation
            assert await page.locator("#step .badge", has_text="advantage").text_content() == f"advantage {advantage:.3f}"
            assert await page.locator("#step .badge", has_text="= episode").count() == 1  # GiGPO's two parts
            assert page.url.endswith(f"#file=train-000001&ep={index}&step=2")  # as the page counts
            await page.keyboard.press("ArrowDown")  # the next episode in the list, from its first step
            await page.locator("h2", has_text="Step 1 of").wait_for()
            await page.goto(server.url + f"#file=train-000001&ep={index}&step=2")  # an address typed in
            await page.locator("h2", has_text="Step 2 of").wait_for()
            await page.select_option("#filter", "failed")
            await page.select_option("#metric", "rows")
            await page.reload()  # the address keeps the place, the filter and the metric
            await page.locator("h2", has_text="Step 2 of").wait_for()
            assert (await page.input_value("#filter"), await page.input_value("#metric")) == ("failed", "rows")
            failed = await page.locator("#episodes li.ep").count()
            assert failed == sum(not t.success for t in batch) and await page.locator("#chart svg circle").count() == 1
            await page.select_option("#filter", "all")
            await page.select_option("#metric", "success")
            await page.select_option("#file", "crafted")
            await page.locator('#episodes li.ep[data-index="0"]').click()
            await page.locator("#response").wait_for()
            assert await page.locator("#response").text_content() == XSS  # shown, not run
            assert await page.locator("#observation").text_content() == XSS
            assert await page.locator("#episode h2").first.text_content() == f"{XSS}  ·  sample 0"
            await page.locator('#episodes li.ep[data-index="1"]').click()  # failed before its first step
            await page.locator("#step", has_text="This episode has no steps: it failed before its first turn.").wait_for()
            await page.keyboard.press("ArrowRight")
            assert await page.locator("#episode pre.bad").text_content() == "error: " + XSS
            assert await page.title() != "pwned" and await page.locator("img").count() == 0
            await page.select_option("#file", "sampled")  # the sampled tokens, by their probability
            await page.locator('#episodes li.ep[data-index="0"]').click()
            await page.locator("#tokens").wait_for()
            tokens = await page.locator("#tokens .tok").all_text_contents()
            assert "".join(tokens) == traj_sampled.steps[0].response + "<|im_end|>"
            assert await page.locator("#tokens .tok").first.get_attribute("title") == "p 0.990 (logprob -0.010)"
            assert await page.locator("#chart svg circle").count() == 2
            await page.locator("#chart svg circle").nth(1).click()  # the metrics of step 2: its batch
            await page.locator("#filesummary", has_text="12 episodes").wait_for()
            assert await page.input_value("#file") == "train-000002"
            first = batch[0].group_id
            solved = sum(t.success for t in batch if t.group_id == first)
            assert await page.locator("#episodes li.group").first.text_content() == f"{batch[0].task_id}  {solved}/4 solved"
            await page.select_option("#file", "eval-easy-test-unseen-000001")  # one sample a task: no groups
            await page.locator("#filesummary", has_text="2 episodes, 100.0% solved").wait_for()
            assert await page.locator("#episodes li.group").count() == 0
            assert "easy-test-unseen" in await page.locator("#episodes li.ep").first.text_content()
            assert errors == []
        finally:
            await browser.close()


async def test_the_page_lets_go_of_an_episode_that_a_rewritten_file_no_longer_holds(run_dir, chromium, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(run_dir, live)
    path = live / "trajectories" / "train-000001.jsonl"
    async with ReplayServer(live, port=0) as server, chromium.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = await browser.new_page()
            await page.goto(server.url + "#file=train-000001&ep=3&step=1")
            await page.locator("h2", has_text="Step 1 of").wait_for()
            path.write_text(path.read_text().splitlines()[0] + "\n")  # rewritten with one episode
            await page.locator("#episode", has_text="The episode shown is no longer in this file").wait_for(timeout=15_000)
            assert page.url.endswith("#file=train-000001")
            await page.locator("#filesummary", has_text="1 episode,").wait_for()
        finally:
            await browser.close()


def test_replay_runs_no_code_a_run_names(run_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (tmp_path / "planted.py").write_text("import pathlib\npathlib.Path(__file__).with_name('ran').touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = (run / "config.yaml").read_text().replace("  plugins: []", "  plugins: [planted]")
    assert "plugins: [planted]" in config
    (run / "config.yaml").write_text(config)
    episode = RunView(run).episode("train-000001", 0)
    assert episode["steps"][0]["advantage"] is not None and not (tmp_path / "ran").exists()


def test_groups_that_dynamic_sampling_dropped_show_as_untrained(tmp_path):
    from agentgym.trainers.config import load_config

    root = tmp_path / "run"
    store = RunStore(root)
    store.write_config(load_config(ROOT / "examples" / "household_quickstart.yaml",
                                   ["rollout.dynamic_sampling=true", f"run_dir={root}"]))
    train = ag.load_tasks("household-v0", "easy-train")[:3]
    RolloutRunner("random", n=4, max_turns=6, store=store, store_name="train-000001", seed=3).run_sync(train)
    trajs = store.load_trajectories("train-000001")
    trained = sorted({t.group_id for t in trajs})[:2]
    store.append_metrics({"step": 1, "rows": 40, "trained_groups": trained})
    view = RunView(root)
    for index, t in enumerate(trajs):
        episode = view.episode("train-000001", index)
        steps = episode["steps"]
        if t.group_id in trained:
            assert all(s["untrained"] is None for s in steps) and any(s["loss_mask"] for s in steps)
        else:
            assert all(s["untrained"] and s["loss_mask"] is False and s["advantage"] is None for s in steps)
        assert "dynamic sampling trained 2 of the 3 groups rolled out" in episode["advantage_note"]
