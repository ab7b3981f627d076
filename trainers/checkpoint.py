"""Atomic checkpoints: written into a temporary directory, then renamed into place.

Layout of ``RUN_DIR/checkpoints/step_00000012/``::

    model/               save_pretrained of the policy (full fine-tuning; a usable hf:/ directory)
    adapter/             peft adapter (LoRA runs instead of model/)
    optimizer.pt         optimizer and learning-rate scheduler state
    rng.pt               python, numpy and torch (CPU and CUDA) generator states
    trainer_state.json   step counter, horizon stage and whatever else the loop needs

A directory named ``step_*`` is complete by construction (rename is atomic on one file system),
so a run killed at any moment resumes from the newest one; leftover ``.tmp-*`` directories are
removed. After a new checkpoint is in place, all but the newest ``keep_last`` are deleted.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

# the run directory's layout lives in the store; re-exported for the trainer
from agentgym.store import checkpoint_name, latest_checkpoint, list_checkpoints  # noqa: F401


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    """Every random generator state the trainer depends on."""
    import numpy as np
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def is_peft(model: Any) -> bool:
    """Whether ``model`` is a peft model (LoRA)."""
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def save_checkpoint(root: str | Path, step: int, *, model: Any, tokenizer: Any = None, optimizer: Any = None,
                    scheduler: Any = None, state: dict[str, Any] | None = None, keep_last: int = 2) -> Path:
    """Write the checkpoint of training step ``step`` atomically and prune old ones; returns its path."""
    import torch

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if is_peft(model):
        with warnings.catch_warnings():  # a base that is a merged adapter (hf:LORA_RUN) has no config.json to check
            warnings.filterwarnings("ignore", message="Could not find a config file in .*vocabulary was not modified")
            model.save_pretrained(tmp / "adapter")
    else:
        model.save_pretrained(tmp / "model")
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "model")
    if optimizer is not None:
        torch.save({"optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None}, tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **(state or {})}, indent=2), encoding="utf-8")
    _fsync_dir(tmp)
    if final.exists():  # a checkpoint of the same step from a run that died after it: replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    prune(root, keep_last)
    return final


def prune(root: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints, and temporary leftovers."""
    root = Path(root)
    for leftover in root.glob(".tmp-step_*"):
        if not leftover.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(leftover, ignore_errors=True)
    for old in list_checkpoints(root)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def load_model_weights(path: str | Path, model: Any) -> None:
    """Copy the weights of checkpoint ``path`` into ``model`` in place (full model or LoRA adapter)."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    if is_peft(model):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(path / "adapter" / "adapter_model.safetensors"))
        return
    files = sorted((path / "model").glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"checkpoint {path} has no model/*.safetensors")
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    seen: set[str] = set()
    with torch.no_grad():
        for f in files:
            for name, tensor in load_file(f).items():
                if name in params:
                    params[name].copy_(tensor.to(params[name].dtype))
                    seen.add(name)
    missing = [n for n, p in model.named_parameters() if n not in seen]
    tied = {id(model.get_input_embeddings().weight)} if hasattr(model, "get_input_embeddings") else set()
    missing = [n for n in missing if id(params[n]) not in tied]
    if missing:
        raise RuntimeError(f"checkpoint {path} lacks weights for {missing[:5]}")


def load_checkpoint(path: str | Path, *, model: Any, optimizer: Any = None, scheduler: Any = None,
                    restore_rng: bool = True) -> dict[str, Any]:
    """Restore model weights, optimizer, scheduler and RNG states from ``path``; returns trainer_state."""
    import torch

    path = Path(path)
    load_model_weights(path, model)
    if optimizer is not None and (path / "optimizer.pt").exists():
        blob = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
        optimizer.load_state_dict(blob["optimizer"])
        if scheduler is not None and blob.get("scheduler") is not None:
            scheduler.load_state_dict(blob["scheduler"])
    if restore_rng and (path / "rng.pt").exists():
        set_rng_state(torch.load(path / "rng.pt", map_location="cpu", weights_only=False))
    return json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
