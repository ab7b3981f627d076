"""Shared fixtures: a tiny random Llama model directory and the tiny-doors environment (no downloads)."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from agentgym.trainers.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture()
def doors():
    from agentgym.trainers.tiny import register_doors

    register_doors()
    return "tiny-doors-v0"


@pytest.fixture(scope="session")
def tiny_config():
    """The function that builds the tiny run config (examples/train_tiny.py) with overrides."""
    return _tiny_config


def _tiny_config(model_dir: Path, run_dir: Path, **over) -> dict:
    """The examples/train_tiny.py config, with overrides merged section by section."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "train_tiny.py"
    spec = importlib.util.spec_from_file_location("train_tiny_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.tiny_config(model_dir, run_dir)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg
