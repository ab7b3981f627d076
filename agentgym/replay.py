"""The trajectory replay server behind ``agentgym replay RUN_DIR``: a run directory in the browser.

:class:`RunView` reads a run directory (``config.yaml``, ``metrics.jsonl``, ``trajectories/*.jsonl``)
and re-reads a file whenever it changes, so a run still in progress can be watched.

:class:`ReplayServer` serves one page (``replay.html``, next to this module, no external assets)
and a small JSON API it reads:

- ``GET /api/run``: the run's name, kind, config, metrics and trajectory files (episodes, success);
- ``GET /api/files/{name}``: one line per episode of ``trajectories/{name}.jsonl``;
- ``GET /api/files/{name}/{index}``: one episode in full, steps with advantages when known.

For the ``train-<step>.jsonl`` files of an RL run, each step gets the advantage and loss mask of
credit assignment (:func:`agentgym.credit.compute`) with the settings that step ran with
(``config.yaml``, with what a later resume changed set back from ``config-changes.jsonl``), and
under exact GiGPO the size of its anchor-state group. The trainer also gives no gradient to steps
without token ids, of agents outside ``update.train_agents``, or in sequences over
``update.max_seq_len``; the page does not show those.

Unknown files and episodes answer 404 with ``{"error": ...}``; only files listed under
``trajectories/`` are ever read.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

from agentgym.errors import ConfigError
from agentgym.store import CONFIG_CHANGES, read_records, read_run_config, read_trajectories, run_kind
from agentgym.types import Trajectory

PAGE = Path(__file__).with_name("replay.html")
_TRAIN_FILE = re.compile(r"^train-(\d+)$")
_EVAL_FILE = re.compile(r"^eval-(.+)-(\d+)$")


class RunView:
    """What the replay page shows of ``run_dir``, read from disk on demand.

    Each trajectory file is parsed once per version (modification time and size): its one-line
    episode summaries are kept, and the full episodes of the last few files opened.
    """

    keep_files = 4  # files whose full episodes stay parsed

    def __init__(self, run_dir: str | Path) -> None:
        self.root = Path(run_dir).resolve()
        if not self.root.is_dir():
            raise ConfigError(f"{run_dir} {'is a file' if self.root.exists() else 'does not exist'}: give a run "
                              "directory (one with trajectories/, e.g. runs/NAME)")
        if not (self.root / "trajectories").is_dir() and not (self.root / "config.yaml").is_file():
            runs = sorted(p.name for p in self.root.iterdir() if (p / "trajectories").is_dir())
            inside = f"; the runs in it: {', '.join(runs)}" if runs else ""
            if not runs and any(self.root.glob("*.jsonl")):
                inside = f"; its .jsonl files look like a run's trajectories/: give the run directory {self.root.parent}"
            raise ConfigError(f"{run_dir} has neither trajectories/ nor config.yaml: it is not a run directory "
                              f"of agentgym train, sft, rollout or eval{inside}")
        self._summaries: dict[str, tuple[tuple[int, int], list[dict[str, Any]]]] = {}
        self._full: OrderedDict[str, tuple[tuple[int, int], list[Trajectory]]] = OrderedDict()
        self._credit: dict[str, tuple[tuple, dict[str, list[list[Any]]], str]] = {}
        self._tokenizer: Any = False  # not looked for yet

    # ----- reading -------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """``config.yaml`` as written (empty when there is none or it is damaged: the episodes still show)."""
        try:
            return read_run_config(self.root)
        except ConfigError:
            return {}

    def files(self) -> dict[str, Path]:
        """The trajectory files by name (without ``.jsonl``): training steps in order, then the rest."""
        paths = {p.stem: p for p in (self.root / "trajectories").glob("*.jsonl")}
        return {n: paths[n] for n in sorted(paths, key=lambda n: (_kind_of(n) != "train", _step_of(n) or 0, n))}

    def _path(self, name: str) -> Path:
        """``trajectories/<name>.jsonl``; KeyError for a file the run does not have (or a name with a path in it)."""
        path = self.root / "trajectories" / f"{name}.jsonl"
        if "/" in name or "\\" in name or not path.is_file():
            raise KeyError(f"the run has no trajectory file {name!r}")
        return path

    def trajectories(self, name: str) -> list[Trajectory]:
        """The episodes of ``trajectories/<name>.jsonl``; KeyError for a file the run does not have."""
        path = self._path(name)
        version = _version(path)
        hit = self._full.get(name)
        if hit is None or hit[0] != version:
            hit = self._full[name] = (version, read_trajectories(path))
            self._summaries[name] = (version, [_summary(i, t) for i, t in enumerate(hit[1])])
        self._full.move_to_end(name)
        while len(self._full) > self.keep_files:
            self._full.popitem(last=False)
        return hit[1]

    # ----- what the page asks for ----------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """The run's name, kind, config, metrics and trajectory files with their episode counts and success.

        A file that cannot be read is listed with its ``error``; the others are still shown.
        """
        config = self.config()
        files = []
        for name in self.files():
            entry: dict[str, Any] = {"name": name, "kind": _kind_of(name), "step": _step_of(name)}
            try:
                episodes = self.episodes(name)
            except (ConfigError, OSError, UnicodeError) as exc:
                entry.update(episodes=0, success_rate=None, error=str(exc))
            else:
                entry.update(episodes=len(episodes), success_rate=(
                    sum(e["success"] for e in episodes) / len(episodes) if episodes else None))
            files.append(entry)
        return _finite({"name": self.root.name, "path": str(self.root), "kind": run_kind(config) or "run",
                        "config": config, "metrics": read_records(self.root / "metrics.jsonl"), "files": files})

    def episodes(self, name: str) -> list[dict[str, Any]]:
        """One line per episode of file ``name``, in file order (``index`` addresses it)."""
        hit = self._summaries.get(name)
        if hit is None or hit[0] != _version(self._path(name)):
            self.trajectories(name)
            hit = self._summaries[name]
        return hit[1]

    def episode(self, name: str, index: int) -> dict[str, Any]:
        """Episode ``index`` of file ``name`` in full, with each step's advantage and loss mask when known.

        Token ids are replaced by their counts and, when the run's tokenizer is found
        (:meth:`tokenizer`), the sampled tokens by their texts; logprobs stay.
        """
        trajs = self.trajectories(name)
        if not 0 <= index < len(trajs):
            raise KeyError(f"{name} has {len(trajs)} episodes (0 to {len(trajs) - 1}), not {index}")
        out = trajs[index].model_dump(mode="json")
        columns, note = self._credit_columns(name)
        for j, step in enumerate(out["steps"]):
            step["prompt_tokens"] = len(step.pop("prompt_ids") or [])
            sampled = step.pop("response_ids") or []
            step["response_tokens"] = len(sampled)
            tokenizer = self.tokenizer() if sampled else None
            step["response_token_texts"] = [tokenizer.decode([t], skip_special_tokens=False) for t in sampled] \
                if tokenizer is not None else None
            for key in ("advantage", "loss_mask", "anchor_steps", "episode_advantage", "untrained"):
                step[key] = columns[key][index][j] if key in columns else None
        out.update(index=index, file=name, advantage_note=note)
        return _finite(out)

    def tokenizer(self) -> Any:
        """The tokenizer of the run's model (a ``tokenizers.Tokenizer``), or None when none is found here:
        the run's own saved model, else the model its config names (``hf:PATH``, or ``smollm2`` once
        converted). Nothing is downloaded or converted, and no model is loaded."""
        if self._tokenizer is False:
            self._tokenizer = None
            try:
                from tokenizers import Tokenizer  # comes with transformers (the train extra)
            except ImportError:
                return None
            for folder in self._model_dirs():
                if (folder / "tokenizer.json").is_file():
                    self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
                    break
        return self._tokenizer

    def _model_dirs(self) -> list[Path]:
        """Where the run's model may be, most specific first: what it trained, what its config names."""
        from agentgym.errors import AgentGymError
        from agentgym.policies.hf import model_source, smollm2_cached

        config = self.config()
        policy = config.get("policy")
        name = policy.get("model") if isinstance(policy, dict) else policy  # train and sft; rollout and eval
        recorded = config.get("model")  # a rollout's hf: model as it resolved then
        folders = [Path(recorded[0])] if isinstance(recorded, list) and recorded and isinstance(recorded[0], str) else []
        for source in (lambda: model_source(self.root)[0], lambda: smollm2_cached() if name == "smollm2" else None,
                       lambda: model_source(name[3:])[0] if isinstance(name, str) and name.startswith("hf:") else None):
            try:
                folders.append(source())
            except AgentGymError:  # not a trained run, or a model that is not on this machine
                continue
        return [f for f in folders if f is not None]

    def _credit_columns(self, name: str) -> tuple[dict[str, list[list[Any]]], str]:
        """Per step of the batch in file ``name``: the ``advantage`` and ``loss_mask`` the trainer's credit
        assignment gave it; under GiGPO its ``episode_advantage`` (A^E: the advantage with ω = 0, so the
        step-level part ω·A^S is the difference) and, with exact anchors, ``anchor_steps`` (the action
        steps of its group that act from the same state, itself included: with 1, A^S is 0); or why
        there are none."""
        step = _step_of(name) if _kind_of(name) == "train" else None
        if step is None:
            return {}, ""
        sources = [self.root / "trajectories" / f"{name}.jsonl", self.root / "config.yaml", self.root / CONFIG_CHANGES,
                   self.root / "metrics.jsonl"]
        version = tuple(_version(p) if p.exists() else None for p in sources)
        hit = self._credit.get(name)
        if hit is not None and hit[0] == version:
            return hit[1], hit[2]
        trajs = self.trajectories(name)
        columns: dict[str, list[list[Any]]] = {}
        try:
            from agentgym.trainers.evaluate import run_config
            from agentgym.trainers.rollouts import credit_rows, training_tasks

            config = run_config(self.root, step)  # as that step ran, before any later resume changed it
            credit = getattr(config, "credit", None)
            if credit is None:
                raise ConfigError("the run's config has no credit settings")
            # the tasks give the milestones their weights; env.plugins stay unimported: a viewer runs no code
            try:
                tasks = training_tasks(config)
            except Exception:  # an environment that is not installed here
                tasks = None
            sign = config.update.advantage_sign  # the trainer's negative control flips every advantage
            rows, mask = credit_rows(trajs, credit, tasks)
            columns["advantage"] = _by_step(trajs, {row: sign * a for row, a in rows.items()})
            columns["loss_mask"] = _by_step(trajs, mask)
            if credit.estimator == "gigpo":
                episode, _ = credit_rows(trajs, credit.model_copy(update={"omega": 0.0}), tasks)
                columns["episode_advantage"] = _by_step(trajs, {row: sign * a for row, a in episode.items()})
                if credit.similarity is None:
                    columns["anchor_steps"] = _anchor_steps(trajs, credit)
            notes = [f"{credit.estimator} advantages and loss masks of credit assignment, recomputed with the "
                     f"settings step {step} ran with"]
            trained = next((m["trained_groups"] for m in read_records(self.root / "metrics.jsonl")
                            if m.get("step") == step and isinstance(m.get("trained_groups"), list)), None)
            if trained is not None:  # dynamic sampling: the groups it dropped gave no gradient
                kept = set(trained)
                dropped = [t.group_id not in kept for t in trajs]
                for key in ("advantage", "episode_advantage"):
                    if key in columns:
                        columns[key] = [[None] * len(row) if off else row for row, off in zip(columns[key], dropped)]
                columns["loss_mask"] = [[False] * len(row) if off else row
                                        for row, off in zip(columns["loss_mask"], dropped)]
                columns["untrained"] = [[True if off else None] * len(t.steps) for t, off in zip(trajs, dropped)]
                groups = len({t.group_id for t in trajs})
                notes.append(f"dynamic sampling trained {len(kept)} of the {groups} groups rolled out; the others "
                             "(their episodes scored alike, or not needed) are marked untrained")
            if tasks is None and credit.milestones == "bonus":
                notes.append("its training tasks cannot be loaded here, so every milestone weighs 1")
            if not any(m.get("step") == step and "rows" in m for m in read_records(self.root / "metrics.jsonl")):
                notes.append("this step has no metrics yet: its batch may be incomplete")
            note = "; ".join(notes)
        except Exception as exc:  # the page still shows the episode; it says why the advantages are missing
            columns = {}
            note = f"no advantages: {type(exc).__name__}: {exc}"
        self._credit[name] = (version, columns, note)
        return columns, note


def _by_step(trajs: list[Trajectory], rows: dict[tuple[int, int], Any]) -> list[list[Any]]:
    """Values keyed by ``(trajectory index, step index)`` as one list per trajectory."""
    return [[rows[(i, j)] for j in range(len(t.steps))] for i, t in enumerate(trajs)]


def _anchor_steps(trajs: list[Trajectory], credit: Any) -> list[list[int | None]]:
    """For each action step with a state key, how many action steps of its group act from that state,
    counting the trajectories credit assignment keeps in its statistics."""
    left_out = {id(t) for t in trajs if (credit.skip_errors and t.error is not None)
                or (t.overlong and not credit.summarization.overlong_in_stats)}
    anchored = [(t, s) for t in trajs if id(t) not in left_out for s in t.steps
                if s.kind == "action" and s.state_key is not None]
    sizes = Counter((t.group_id, s.state_key) for t, s in anchored)
    return [[sizes[(t.group_id, s.state_key)] if id(t) not in left_out and s.kind == "action"
             and s.state_key is not None else None for s in t.steps] for t in trajs]


def _summary(index: int, t: Trajectory) -> dict[str, Any]:
    return {"index": index, "id": t.id, "task_id": t.task_id, "group_id": t.group_id,
            "sample": t.metadata.get("sample"), "success": t.success, "reward": _finite(t.reward),
            "turns": t.num_turns, "invalid": sum(not s.valid for s in t.steps if s.kind == "action"),
            "terminated": t.terminated, "truncated": t.truncated, "overlong": t.overlong, "error": t.error}


def _version(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _kind_of(name: str) -> str:
    return "train" if _TRAIN_FILE.match(name) else "eval" if _EVAL_FILE.match(name) else "other"


def _step_of(name: str) -> int | None:
    match = _TRAIN_FILE.match(name) or _EVAL_FILE.match(name)
    return int(match.groups()[-1]) if match else None


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has no such numbers, and browsers refuse them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class ReplayServer:
    """Serves the replay page and its API for one run directory on ``host:port``.

    Use as an async context manager or call :meth:`start` and :meth:`aclose`; ``port=0`` picks a
    free port (read it from :attr:`url`). Raises :class:`~agentgym.errors.ConfigError` at once for
    a path that is not a run directory.
    """

    def __init__(self, run_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.view = RunView(run_dir)
        self.host, self.port = host, port
        self._runner: Any = None
        self._state = "new"
        self._lock = asyncio.Lock()  # the view's caches are not thread-safe: one reader thread at a time

    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8765/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def app(self) -> Any:
        """The aiohttp application (routes of the module docstring)."""
        from aiohttp import web

        async def page(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})

        async def answer(fn: Any, *args: Any) -> web.Response:
            try:
                async with self._lock:  # parsing a large file runs off the event loop
                    data = await asyncio.to_thread(fn, *args)
            except KeyError as exc:
                return web.json_response({"error": f"not found: {exc.args[0]}"}, status=404)
            except ConfigError as exc:  # a trajectory file with a line that is not a trajectory
                return web.json_response({"error": str(exc)}, status=500)
            except Exception as exc:  # a file removed or rewritten while it was read, ...: the page says so
                return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=500)
            return web.json_response(data, dumps=lambda d: json.dumps(d, allow_nan=False))

        async def run(request: web.Request) -> web.Response:
            return await answer(self.view.run)

        async def episodes(request: web.Request) -> web.Response:
            return await answer(self.view.episodes, request.match_info["name"])

        async def episode(request: web.Request) -> web.Response:
            return await answer(self.view.episode, request.match_info["name"], int(request.match_info["index"]))

        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_get("/api/run", run)
        app.router.add_get("/api/files/{name}", episodes)
        app.router.add_get(r"/api/files/{name}/{index:\d+}", episode)
        return app

    async def start(self) -> None:
        """Start listening on ``host:port``; a server starts once (OSError when the port is taken)."""
        from aiohttp import web

        if self._state != "new":
            raise RuntimeError(f"this ReplayServer is {'closed' if self._state == 'closed' else 'already serving'}; "
                               "create a new one")
        self._state = "serving"
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except BaseException:
            await self.aclose()
            raise
        self.port = self._runner.addresses[0][1]  # the port picked for port 0

    async def aclose(self) -> None:
        """Stop the server (for good)."""
        self._state = "closed"
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "ReplayServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
