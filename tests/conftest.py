"""Shared fixtures. The SmolLM2 model is loaded once per session and shared by every test that asks for it."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download weights during tests
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct as a TransformersPolicy (converted once into the agentgym cache).

    Shared by the whole session: tests must not close it or change its weights.
    """
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from agentgym.policies.hf import TransformersPolicy, smollm2_path

    return TransformersPolicy(smollm2_path(), name="smollm2")


@pytest.fixture(scope="session")
def bwrap():
    """Skips the test, saying why, where the process sandbox (bubblewrap) cannot run."""
    import asyncio

    from agentgym.errors import SandboxError
    from agentgym.sandboxes import ProcessSandbox

    async def probe() -> None:
        async with ProcessSandbox():
            pass

    try:
        asyncio.run(probe())
    except SandboxError as exc:
        pytest.skip(f"process sandbox unavailable: {exc}")
