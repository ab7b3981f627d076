"""Isolated execution back ends behind one :class:`Sandbox` protocol.

- :class:`ProcessSandbox` (the default, no daemon): bubblewrap namespaces and rlimits.
- :class:`DockerSandbox` (extra ``docker``): a container per session through any Docker API
  endpoint (Docker, or podman's ``podman system service``).

``make(kind, **options)`` builds either by name. Both are async context managers; see
:class:`Sandbox` for the calls and :class:`ExecResult` for what they return.
"""

from __future__ import annotations

from typing import Any

from ._base import ExecResult, Limits, Sandbox, SandboxSession
from ._process import ProcessSandbox, ProcessSession

__all__ = ["DockerSandbox", "ExecResult", "Limits", "ProcessSandbox", "ProcessSession", "Sandbox",
           "SandboxSession", "make"]

_KINDS = ("process", "docker")


def make(kind: str = "process", **options: Any) -> Sandbox:
    """Build a sandbox by kind: ``"process"`` (bubblewrap) or ``"docker"``.

    ``options`` are the back end's keywords: default limits (``timeout``, ``memory_mb``,
    ``cpu_seconds``, ``max_output_bytes``, ``file_size_mb``, ``max_processes``, ``disk_mb``) and
    its own settings (``warm``; for Docker ``base_url`` and ``image``).
    """
    if kind == "process":
        return ProcessSandbox(**options)
    if kind == "docker":
        from ._docker import DockerSandbox  # the module's lazy attribute serves importers, not this module

        return DockerSandbox(**options)
    raise ValueError(f"unknown sandbox kind {kind!r}; choose one of {', '.join(_KINDS)}")


def __getattr__(name: str) -> Any:
    if name in ("DockerSandbox", "DockerSession"):  # the docker SDK is imported only when used
        from . import _docker

        return getattr(_docker, name)
    raise AttributeError(f"module 'agentgym.sandboxes' has no attribute {name!r}")
