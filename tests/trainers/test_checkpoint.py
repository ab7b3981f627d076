"""Checkpoints: atomic directories, keep-last-k, and an exact restore of weights, optimizer and RNG."""

import json
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agentgym.trainers import checkpoint as ckpt  # noqa: E402


def _model_and_opt(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda n: 1.0 / (n + 1))
    return model, opt, sched


def _train_one(model, opt, sched):
    ids = torch.tensor([[2, 5, 6, 7, 8]])
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    sched.step()
    opt.zero_grad()


def test_roundtrip_restores_weights_optimizer_rng_and_state(tmp_path, tiny_model_dir):
    model, opt, sched = _model_and_opt(tiny_model_dir)
    _train_one(model, opt, sched)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    path = ckpt.save_checkpoint(tmp_path, 3, model=model, optimizer=opt, scheduler=sched,
                                state={"horizon_stage": 1, "sft_done": True})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    _train_one(model, opt, sched)  # move on, then come back

    fresh, opt2, sched2 = _model_and_opt(tiny_model_dir)
    state = ckpt.load_checkpoint(path, model=fresh, optimizer=opt2, scheduler=sched2)
    assert state == {"step": 3, "horizon_stage": 1, "sft_done": True}
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert sched2.last_epoch == 1 and opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"] - 1
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert (path / "model" / "config.json").exists()  # a usable hf:/ directory


def test_keep_last_and_leftovers(tmp_path, tiny_model_dir):
    model, _, _ = _model_and_opt(tiny_model_dir)
    (tmp_path / ".tmp-step_00000009-1").mkdir()  # a dead writer's half-written checkpoint
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, model=model, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000002", "step_00000003"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step_00000003"
    assert not list(tmp_path.glob(".tmp-*"))
    assert json.loads((tmp_path / "step_00000003" / "trainer_state.json").read_text())["step"] == 3


def test_lora_checkpoint_holds_the_adapter(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from agentgym.trainers.model import add_lora

    lora = add_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), 4, 8, 0.0, "all-linear")
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.fill_(0.25)
    path = ckpt.save_checkpoint(tmp_path, 1, model=lora)
    assert (path / "adapter" / "adapter_model.safetensors").exists() and not (path / "model").exists()
    other = add_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), 4, 8, 0.0, "all-linear")
    ckpt.load_checkpoint(path, model=other)
    b = {n: p for n, p in other.named_parameters() if "lora_B" in n}
    assert b and all(torch.all(p == 0.25) for p in b.values())


def _logits(model, ids=(2, 5, 6, 7, 8)):
    with torch.no_grad():
        return model(input_ids=torch.tensor([list(ids)])).logits


def test_hf_loads_a_run_directory_its_checkpoints_and_lora_adapters(tmp_path, tiny_model_dir, monkeypatch):
    from agentgym.errors import PolicyError
    from agentgym.policies import load_policy
    from agentgym.trainers.model import add_lora

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model, opt, sched = _model_and_opt(tiny_model_dir)
    _train_one(model, opt, sched)
    ckpt.save_checkpoint(tmp_path / "full" / "checkpoints", 1, model=model, tokenizer=tokenizer)
    _train_one(model, opt, sched)
    newest = ckpt.save_checkpoint(tmp_path / "full" / "checkpoints", 2, model=model, tokenizer=tokenizer)
    for source in (tmp_path / "full", newest):  # a run directory means its newest checkpoint
        assert torch.allclose(_logits(load_policy(f"hf:{source}").model), _logits(model))

    lora = add_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir), 4, 8, 0.0, "all-linear")
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    path = ckpt.save_checkpoint(tmp_path / "lora" / "checkpoints", 1, model=lora)
    assert not torch.allclose(_logits(lora), _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir)))
    for source in (tmp_path / "lora", path, path / "adapter"):
        merged = load_policy(f"hf:{source}").model
        assert not hasattr(merged, "peft_config")  # merged into a plain model
        assert torch.allclose(_logits(merged), _logits(lora), atol=1e-5)

    # LoRA trained on the merged model of a LoRA run: its adapter names that run's adapter as its base
    second = add_lora(load_policy(f"hf:{tmp_path / 'lora'}").model, 4, 8, 0.0, "all-linear")
    with torch.no_grad():
        for name, p in second.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    ckpt.save_checkpoint(tmp_path / "lora2" / "checkpoints", 1, model=second)
    assert torch.allclose(_logits(load_policy(f"hf:{tmp_path / 'lora2'}").model), _logits(second), atol=1e-5)

    with pytest.raises(PolicyError, match="not a Hugging Face model directory.*run directory"):
        load_policy(f"hf:{tmp_path / 'lora' / 'checkpoints'}")  # holds checkpoints, is none
    monkeypatch.chdir(tiny_model_dir.parent)  # a relative path is recorded absolute: adapters name their base by it
    assert load_policy(f"hf:{tiny_model_dir.name}").model.name_or_path == str(tiny_model_dir.resolve())
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(f"hf:{tmp_path / 'nowhere'}")
    config = json.loads((path / "adapter" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (path / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(PolicyError, match="LoRA adapter .* was trained on .*gone.*not a local directory"):
        load_policy(f"hf:{tmp_path / 'lora'}")
