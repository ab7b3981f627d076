"""The one exception tree of agentgym.

    AgentGymError                 root: catch this to catch anything agentgym raises on purpose
    ├── UnknownEnvironmentError   an environment id that is not registered (names close matches)
    ├── UnknownSuiteError         a task suite an environment does not have
    ├── InvalidActionError        an action that cannot be executed (raised only by helpers that
    │                             are asked to be strict; Environment.step turns it into an
    │                             error observation instead)
    ├── EnvironmentClosedError    using an environment, sandbox or server after aclose()
    ├── SandboxError              a sandbox that cannot start (missing bubblewrap, no namespaces)
    │   └── SandboxTimeout        a command that ran past its wall-clock limit
    ├── PolicyError               an inference back end that fails (wrong URL, unknown model)
    │   └── ContextLengthError    a prompt that, with its new tokens, does not fit the model's context
    └── ConfigError               a bad configuration value; the message names the key and the fix
"""

from __future__ import annotations


def validation_summary(exc: Exception, most: int = 3) -> str:
    """A pydantic ``ValidationError`` in one line: each bad field with pydantic's message, the first ``most``."""
    errors = exc.errors(include_url=False)  # type: ignore[attr-defined]
    parts = [f"{'.'.join(map(str, e['loc'])) or 'record'!r}: {e['msg']}" for e in errors[:most]]
    more = f" (and {len(errors) - most} more)" if len(errors) > most else ""
    return "; ".join(parts) + more


def yaml_problem(exc: Exception) -> str:
    """A YAML parse error in one line: the problem and where, without the parser's excerpt."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(exc, 'problem', None) or exc}{where}"


class AgentGymError(Exception):
    """Root of every error agentgym raises on purpose."""


class UnknownEnvironmentError(AgentGymError, KeyError):
    """An environment id that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownSuiteError(AgentGymError, KeyError):
    """A task suite that the environment does not provide."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidActionError(AgentGymError, ValueError):
    """An action that cannot be parsed or executed."""


class EnvironmentClosedError(AgentGymError, RuntimeError):
    """A resource used after ``aclose()``."""


class SandboxError(AgentGymError, RuntimeError):
    """A sandbox that cannot run a command."""


class SandboxTimeout(SandboxError, TimeoutError):
    """A sandboxed command that passed its wall-clock limit."""


class PolicyError(AgentGymError, RuntimeError):
    """An inference back end that cannot serve a request."""


class ContextLengthError(PolicyError):
    """A prompt whose tokens plus the new tokens asked for pass the model's context length."""


class ConfigError(AgentGymError, ValueError):
    """A configuration value that is wrong; the message says what to change."""
