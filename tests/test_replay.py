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
    """An RL run's directory as the trainer leaves it: config, metrics, one step's batch, one evaluation,
    and a file whose response is HTML that must stay text."""
    from agentgym.trainers.config import load_config

    root = tmp_path_factory.mktemp("replay") / "run"
    store = RunStore(root)
    config = load_config(ROOT / "examples" / "household_quickstart.yaml",
                         ["credit.estimator=gigpo", "credit.milestones=bonus", f"run_dir={root}"])
    store.write_config(config)
    train = ag.load_tasks("household-v0", "easy-train")[:3]
    RolloutRunner("random", n=4, max_turns=6, store=store, store_name="train-000001", seed=3).run_sync(train)
    test = ag.load_tasks("household-v0", "easy-test-unseen")[:2]
    RolloutRunner("expert", store=store, store_name="eval-easy-test-unseen-000001").run_sync(test)
    for step, success in [(1, 0.25), (2, 0.5)]:
        store.append_metrics({"step": step, "success": success, "loss": float("nan")})
    crafted = store.load_trajectories("eval-easy-test-unseen-000001")[0]
    crafted.steps[0].response = XSS
    store.append_trajectory(crafted, "crafted")
    return root


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
            ("train-000001", "train", 12), ("crafted", "other", 1), ("eval-easy-test-unseen-000001", "eval", 2)]
        assert run["files"][0]["success_rate"] == sum(t.success for t in batch) / 12
        assert run["metrics"][0] == {"step": 1, "success": 0.25, "loss": None}  # NaN is not JSON
        _, episodes = await _get(server.url + "api/files/train-000001")
        assert [(e["id"], e["turns"], e["success"]) for e in episodes] == [(t.id, t.num_turns, t.success) for t in batch]
        assert sum(e["invalid"] for e in episodes) == sum(not s.valid for t in batch for s in t.steps)

        config = load_config(store.read_config())
        credit = compute(batch, config.credit, tasks=ag.load_tasks("household-v0", "easy-train"))
        expected = {(int(i), int(j)): a for i, j, a in zip(credit.traj_index, credit.step_index, credit.advantages)}
        assert any(a != 0 for a in expected.values())  # random play: some steps did better than others
        for i, traj in enumerate(batch):
            _, episode = await _get(server.url + f"api/files/train-000001/{i}")
            assert episode["id"] == traj.id and episode["advantage_note"].startswith("gigpo advantages recomputed")
            assert [s["response"] for s in episode["steps"]] == [s.response for s in traj.steps]
            assert [s["advantage"] for s in episode["steps"]] == pytest.approx([expected[i, j] for j in range(len(traj.steps))])
            assert all(s["trained"] is True and "prompt_ids" not in s for s in episode["steps"])
        _, evaluated = await _get(server.url + "api/files/eval-easy-test-unseen-000001/0")
        assert evaluated["advantage_note"] == "" and evaluated["steps"][0]["advantage"] is None


async def test_unknown_files_and_episodes_are_404_and_only_trajectory_files_are_read(run_dir):
    async with ReplayServer(run_dir, port=0) as server:
        for path in ["api/files/nope", "api/files/..%2Fconfig", "api/files/train-000001/12", "api/files/config/0"]:
            status, body = await _get(server.url + path)
            assert status == 404 and body["error"].startswith("not found"), path


async def test_a_file_that_grows_is_read_again_and_a_torn_last_line_is_skipped(run_dir, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(run_dir, live)
    store = RunStore(live)
    one = store.load_trajectories("crafted")[0]
    async with ReplayServer(live, port=0) as server:
        assert len((await _get(server.url + "api/files/crafted"))[1]) == 1
        store.append_trajectory(one.model_copy(update={"id": "second"}), "crafted")
        with open(live / "trajectories" / "crafted.jsonl", "a") as fh:
            fh.write(one.model_dump_json()[:100])  # a writer killed mid-line
        _, episodes = await _get(server.url + "api/files/crafted")
        assert [e["id"] for e in episodes] == [one.id, "second"]
        _, run = await _get(server.url + "api/run")
        assert [f["episodes"] for f in run["files"] if f["name"] == "crafted"] == [2]


def test_a_path_that_is_not_a_run_directory_is_refused_and_left_alone(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for name in ("grpo", "gigpo"):
        (tmp_path / "bench" / name / "trajectories").mkdir(parents=True)
    for path, message in [(tmp_path / "missing", "does not exist"), (tmp_path / "file.txt", "is a file"),
                          (tmp_path / "empty", "has neither trajectories/ nor config.yaml"),
                          (tmp_path / "bench", "not a run directory .*; the runs in it: gigpo, grpo$")]:
        with pytest.raises(ConfigError, match=message):
            RunView(path)
    assert not (tmp_path / "missing").exists() and list((tmp_path / "empty").iterdir()) == []


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
    index = max(range(len(batch)), key=lambda i: len(batch[i].steps))  # the longest: steps to walk through
    traj = batch[index]
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
            assert "advantage" in await page.locator("#step").text_content()
            assert page.url.endswith(f"#file=train-000001&ep={index}&step=1")
            await page.reload()  # the address keeps the place
            await page.locator("h2", has_text="Step 2 of").wait_for()
            await page.select_option("#file", "crafted")
            await page.locator('#episodes li.ep[data-index="0"]').click()
            await page.locator("#response").wait_for()
            assert await page.locator("#response").text_content() == XSS  # shown, not run
            assert await page.title() != "pwned" and await page.locator("#step img").count() == 0
            await page.locator("#metric").wait_for()
            assert await page.locator("#chart svg circle").count() == 2
            assert errors == []
        finally:
            await browser.close()
