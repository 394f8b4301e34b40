#!/usr/bin/env bash
# One-time setup in a virtual environment (.venv), so it works on PEP 668 systems (Debian/Ubuntu's
# Python refuses a bare `pip install`): the CPU build of torch first, then mllm-audit.
# Usage: scripts/setup.sh [EXTRA]   (EXTRA: test, quant, ... from pyproject.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$py" -c "import torch" 2>/dev/null; then
  # PyPI's Linux torch wheel pulls several GB of CUDA libraries; PyTorch's CPU index has the CPU build
  # (and torch's own dependencies). Where that index is out of reach, the pinned version from the
  # configured index.
  "$py" -m pip install -q --retries 1 --timeout 20 torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    || "$py" -m pip install -q torch==2.13.0
fi
"$py" -m pip install -q -e ".${1:+[$1]}"
# Say which torch build is installed and what it costs on disk (a CUDA build is several GB).
"$py" - >&2 <<'PY'
import os, torch
root = os.path.dirname(torch.__file__)
size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU"
print(f"torch {torch.__version__} ({build} build): {size / 2**20:.0f} MiB in {root}")
PY
echo "ready: .venv/bin/mllm-audit (or: source .venv/bin/activate)" >&2
