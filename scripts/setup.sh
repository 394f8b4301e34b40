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
echo "ready: .venv/bin/mllm-audit (or: source .venv/bin/activate)" >&2
