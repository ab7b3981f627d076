"""Environment registry and task suites, the Gymnasium way.

Ids are versioned (``household-v0``); entry points are classes or lazy ``"module:Class"`` strings,
so registering costs nothing until ``make``. Third-party packages register through the
``agentgym.environments`` entry-point group: each entry point names a callable that calls
:func:`register`, or an Environment class, registered under the entry point's name; an uninstalled module does the same through :func:`load_plugin` (the
``--plugin`` flag, ``env.plugins`` in training configs). Task suites are JSONL files, one
:class:`~agentgym.types.Task` per line.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from agentgym.errors import ConfigError, UnknownEnvironmentError, UnknownSuiteError
from agentgym.types import Task

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*-v\d+$")
ENTRY_POINT_GROUP = "agentgym.environments"

# Shipped environments: id -> (entry point, folder of JSONL suites inside agentgym.tasks,
# optional "module:function" that registers suites made at load time).
_BUILTIN: dict[str, tuple[str, str, str | None]] = {
    "household-v0": ("agentgym.environments.household:HouseholdEnv", "household", None),
    "code-v0": ("agentgym.environments.code:CodeEnv", "code", "agentgym.tasks.code:register_suites"),
    "sql-v0": ("agentgym.environments.sql:SQLEnv", "sql", None),
    "search-v0": ("agentgym.environments.search:SearchEnv", "search", None),
    "webshop-v0": ("agentgym.environments.webshop:WebShopEnv", "webshop", None),
}


@dataclass
class EnvSpec:
    """A registered environment: its id, how to build it, its defaults and its task suites."""

    id: str
    entry_point: str | type
    defaults: dict[str, Any] = field(default_factory=dict)
    suites: dict[str, Path | Callable[[], list[Task]]] = field(default_factory=dict)
    description: str = ""

    def load(self) -> type:
        """Import and return the environment class."""
        if isinstance(self.entry_point, str):
            module, _, attr = self.entry_point.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self.entry_point = obj
        return self.entry_point  # type: ignore[return-value]


_registry: dict[str, EnvSpec] = {}
_plugins_loaded = False
_plugin_failures: dict[str, str] = {}  # entry-point name -> why it failed to load
_registrations = 0  # register() calls so far: whether a plugin's function registered anything
_called_plugins: set[str] = set()  # 'module:function' plugins called so far


def register(id: str, entry_point: str | type, *, suites: dict[str, Any] | str | Path | None = None,
             description: str = "", **defaults: Any) -> EnvSpec:
    """Register an environment under a versioned ``id`` (``name-vN``).

    ``entry_point`` is the class or ``"module:Class"``; ``defaults`` are constructor keywords
    that :func:`make` overrides. ``suites`` maps suite names to JSONL paths or to callables that
    return tasks, or names a folder whose ``*.jsonl`` files are the suites.
    """
    if not _ID.match(id):
        raise ValueError(f"environment ids look like 'name-v0' (lowercase, versioned), got {id!r}")
    earlier = _registry[id].entry_point if id in _registry else _BUILTIN[id][0] if id in _BUILTIN else None
    if earlier is not None and earlier != entry_point:  # e.g. a plugin reusing a built-in id: say so
        warnings.warn(f"agentgym: register({id!r}) replaces the environment registered as {_name(earlier)} "
                      f"with {_name(entry_point)}; use a new id or version to keep both", RuntimeWarning, stacklevel=2)
    spec = EnvSpec(id=id, entry_point=entry_point, defaults=defaults, description=description)
    if isinstance(suites, (str, Path)):
        if not Path(suites).is_dir():
            raise ConfigError(f"register({id!r}): suites folder {str(suites)!r} does not exist")
        spec.suites.update(_suites_in(Path(suites)))
    elif suites:
        spec.suites.update({k: Path(v) if isinstance(v, str) else v for k, v in suites.items()})
        missing = [f"{k} ({v})" for k, v in spec.suites.items() if isinstance(v, Path) and not v.is_file()]
        if missing:
            raise ConfigError(f"register({id!r}): no such suite file: {', '.join(missing)}")
    _registry[id] = spec
    global _registrations
    _registrations += 1
    from agentgym import _gym_hook

    _gym_hook.register_one(id)
    return spec


def _name(entry_point: str | type) -> str:
    return entry_point if isinstance(entry_point, str) else f"{entry_point.__module__}:{entry_point.__qualname__}"


def register_suite(env_id: str, name: str, source: str | Path | Callable[[], list[Task]]) -> None:
    """Add a task suite to a registered environment (a JSONL path or a callable returning tasks)."""
    spec(env_id).suites[name] = Path(source) if isinstance(source, str) else source


def _suites_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.jsonl"))} if folder.is_dir() else {}


def _ensure_loaded() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    tasks_root = Path(__file__).resolve().parent.parent / "tasks"
    try:  # installed as agentgym.tasks (wheel or editable)
        import agentgym.tasks as tasks_pkg

        tasks_root = Path(tasks_pkg.__file__).parent
    except ImportError:
        pass
    for env_id, (entry, folder, extra_suites) in _BUILTIN.items():
        if env_id not in _registry:
            register(env_id, entry, suites=tasks_root / folder)
            if extra_suites:
                module, _, func = extra_suites.partition(":")
                getattr(importlib.import_module(module), func)()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
            if isinstance(target, type):  # an Environment class, gym style: registered under the entry point's name
                from agentgym.env import Environment

                if not issubclass(target, Environment):
                    raise TypeError(f"{target.__name__} is a class but not an agentgym.Environment")
                register(ep.name, target)
            else:
                target()
        except Exception as exc:  # one broken third-party package must not take the others down
            _plugin_failures[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
            warnings.warn(f"agentgym: the environment plugin {ep.name!r} failed to load and is skipped "
                          f"({_plugin_failures[ep.name]})", RuntimeWarning, stacklevel=2)


def spec(env_id: str) -> EnvSpec:
    """The :class:`EnvSpec` of ``env_id``; unknown ids raise with the closest matches."""
    _ensure_loaded()
    try:
        return _registry[env_id]
    except KeyError:
        close = difflib.get_close_matches(env_id, list(_registry), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        broken = "".join(f" The plugin {name!r} failed to load ({why})." for name, why in _plugin_failures.items())
        raise UnknownEnvironmentError(
            f"unknown environment {env_id!r}.{hint} Registered: {', '.join(sorted(_registry)) or '(none)'}.{broken}"
        ) from None


def registered() -> list[EnvSpec]:
    """All registered environments, sorted by id."""
    _ensure_loaded()
    return [_registry[k] for k in sorted(_registry)]


def make(env_id: str, **overrides: Any) -> Any:
    """Build a new instance of ``env_id`` with its registered defaults updated by ``overrides``."""
    from agentgym.env import Environment

    s = spec(env_id)
    env = s.load()(**{**s.defaults, **overrides})
    if not isinstance(env, Environment):
        raise TypeError(f"{env_id!r} is registered with {s.entry_point!r}, which made a {type(env).__name__} object, "
                        "not an agentgym.Environment")
    return env


def suites(env_id: str) -> list[str]:
    """Names of the task suites of ``env_id``."""
    return sorted(spec(env_id).suites)


def load_tasks(env_id: str, suite: str = "train") -> list[Task]:
    """The tasks of suite ``suite`` of ``env_id`` (e.g. ``train``, ``test-seen``, ``test-unseen``)."""
    s = spec(env_id)
    if suite not in s.suites:
        raise UnknownSuiteError(
            f"environment {env_id!r} has no task suite {suite!r}; its suites: {', '.join(sorted(s.suites)) or '(none)'}"
        )
    source = s.suites[suite]
    if callable(source):
        return list(source())
    tasks = []
    with open(source, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    tasks.append(Task.model_validate_json(line))
                except ValidationError as exc:
                    from agentgym.errors import validation_summary

                    raise ConfigError(f"{source}, line {number}: not a task: {validation_summary(exc)}") from None
    return tasks


def count_tasks(env_id: str, suite: str) -> int:
    """Number of tasks in a suite, without parsing them (a line count for JSONL suites)."""
    source = spec(env_id).suites[suite]
    if callable(source):
        return len(source())
    with open(source, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def check_options(env_id: str, options: dict[str, Any], setting: str = "env.options") -> dict[str, Any]:
    """Raise :class:`ConfigError` naming ``setting`` when ``env_id``'s class does not take ``options``
    (with its registered defaults): unknown keywords, values the parameter's annotation does not take,
    or a constructor that raises on them (a path that does not exist, a bad choice); before anything is
    built with them. Returns ``options`` as the annotations read them: text becomes the number, path
    or other type asked for (``"1e1"`` a float), a list a tuple; a bool is never taken for a number."""
    import inspect

    from agentgym.env import Environment

    env_spec = spec(env_id)
    merged = {**env_spec.defaults, **options}
    env_class = env_spec.load()
    try:
        inspect.signature(env_class).bind(**merged)
        if merged and env_class.__init__ is Environment.__init__:
            raise TypeError(f"{env_class.__name__} takes no options, got {sorted(merged)}")
    except TypeError as exc:
        takes = [p.name for p in inspect.signature(env_class).parameters.values()
                 if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        known = f"; {env_class.__name__} takes {', '.join(takes)}" if takes and "takes no options" not in str(exc) else ""
        raise ConfigError(f"{setting}: {exc}{known}") from None
    hints = _init_hints(env_class)
    checked = {key: _option_value(key, value, hints.get(key), setting) if key in options else value
               for key, value in merged.items()}
    try:
        env = env_class(**checked)
    except Exception as exc:  # noqa: BLE001 - whatever the constructor refuses, said before the run starts
        shown = ", ".join(f"{k}={'...' if _SECRET.search(k) else repr(v)}" for k, v in checked.items() if k in options)
        raise ConfigError(f"{setting}: {env_class.__name__}({shown}) raised {type(exc).__name__}: {exc}") from None
    _close_unused(env)
    return {key: checked[key] for key in options}


def _init_hints(env_class: type) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(env_class.__init__)
    except Exception:  # noqa: BLE001 - annotations that do not resolve: the values go unchecked
        return {}


_SECRET = re.compile(r"dsn|password|secret|token|key", re.IGNORECASE)  # option values an error must not show


def _option_value(key: str, value: Any, hint: Any, setting: str) -> Any:
    """``value`` as the parameter's annotation reads it (pydantic's lax mode, a bool only for a bool)."""
    from pydantic import ConfigDict, TypeAdapter

    if hint is None or hint is Any:
        return value
    try:
        adapter = TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # noqa: BLE001 - an annotation pydantic cannot check
        return value
    wanted = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
    try:
        return adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        error = exc
    if not _holds_bool(value):  # lax mode would read true as 1, also inside a dict or list
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            error = exc
    shown = "..." if _SECRET.search(key) else repr(value)
    raise ConfigError(f"{setting}: {key}={shown} is not a valid {wanted} "
                      f"({error.errors()[0]['msg'].lower()})") from None


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(_holds_bool(v) for v in value.values())
    return isinstance(value, (list, tuple)) and any(_holds_bool(v) for v in value)


def _close_unused(env: Any) -> None:
    """Close an environment made only to check its options (never reset), on a loop of its own."""
    import asyncio
    import threading

    close = getattr(env, "aclose", None)
    if close is None:
        return

    def run() -> None:
        try:
            asyncio.run(close())
        except Exception:  # noqa: BLE001 - the options were fine; a close that fails is the episode's concern
            pass

    worker = threading.Thread(target=run, daemon=True)  # its own loop: works under a running loop too
    worker.start()
    worker.join()


def load_plugins(plugins: list[str], setting: str = "plugin") -> None:
    """:func:`load_plugin` each of ``plugins``, in order."""
    for plugin in plugins:
        load_plugin(plugin, setting)


def load_plugin(plugin: str, setting: str = "plugin") -> None:
    """Import ``module`` or ``module:function`` and call the function: how an uninstalled module registers its
    environments. The current directory is searched last, so a ``my_envs.py`` there is found but never
    hides an installed package. ``setting`` names the flag or config key in errors."""
    import os
    import sys

    module, _, fn = plugin.partition(":")
    if not module or module.startswith(".") or (fn and not fn.isidentifier()):
        raise ConfigError(f"{setting}: {plugin!r} is not 'module' or 'module:function' (e.g. 'my_envs' for a "
                          "my_envs.py here, or 'my_envs:register')")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    _ensure_loaded()
    first_import, before = module not in sys.modules, dict(_registry)
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name) and module[len(exc.name):][:1] in ("", "."):
            raise ConfigError(f"{setting}: no module {module!r} here or installed; give a module such as 'my_envs' "
                              "(my_envs.py in the current directory) or an installed 'pkg.envs'") from None
        raise ConfigError(f"{setting}: importing {module!r} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # the plugin's own code: say whose it is
        raise ConfigError(f"{setting}: importing {module!r} failed: {type(exc).__name__}: {exc}") from exc
    if fn:
        if not callable(getattr(mod, fn, None)):
            raise ConfigError(f"{setting}: {module!r} has no function {fn!r}")
        calls, first_call = _registrations, plugin not in _called_plugins
        try:
            getattr(mod, fn)()
        except Exception as exc:
            raise ConfigError(f"{setting}: {module}:{fn}() failed: {type(exc).__name__}: {exc}") from exc
        _called_plugins.add(plugin)
        if first_call and _registrations == calls:  # e.g. os:getcwd (a later call may skip what is registered)
            warnings.warn(f"{setting}: {module}:{fn}() registered no environment", RuntimeWarning, stacklevel=2)
    if first_import and not fn and _registry == before:
        hooks = [name for name in ("register", "register_envs") if callable(getattr(mod, name, None))]
        hint = f"; does it register them in a function? then name it: {module}:{hooks[0]}" if hooks else ""
        warnings.warn(f"{setting}: importing {module!r} registered no environment{hint}", RuntimeWarning, stacklevel=2)
