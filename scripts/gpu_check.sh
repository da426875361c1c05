#!/usr/bin/env bash
# One-command GPU check of the CuPy kernels: kernel + codegen tests, then a small speed benchmark (T up to 64,
# N up to 2^20; cupy vs torch vs fused [vs SpikingJelly]). Everything lands in OUT_DIR:
#   env.txt (GPU, versions), pytest.log + pytest.xml, bench.log + bench/bench.csv.
# Compiled kernels go to the per-user caches (SNN_KERNEL_CACHE, CUPY_CACHE_DIR if set, else their defaults).
# Needs no network. WHEEL_DIR (or $SNN_WHEEL_DIR), if given, is pip-installed with --no-index --no-deps first
# (e.g. a spikingjelly wheel for the peer column; without it the peer is skipped). Budget: < 6 minutes on one GPU.
#
#   scripts/gpu_check.sh OUT_DIR [WHEEL_DIR]
set -u
OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR [WHEEL_DIR]}
WHEELS=${2:-${SNN_WHEEL_DIR:-}}
PY=${PYTHON:-$(command -v python || command -v python3)}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

{
  date
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$PY" - <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name() if torch.cuda.is_available() else None)
try:
    import cupy
    print("cupy", cupy.__version__)
except Exception as err:
    print("cupy import failed:", err)
EOF
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ -n "$WHEELS" ] && compgen -G "$WHEELS/*.whl" > /dev/null; then
  "$PY" -m pip install --no-index --no-deps "$WHEELS"/*.whl > "$OUT/pip.log" 2>&1 \
    || echo "wheel install failed, see $OUT/pip.log"
fi

rc=0
if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 200 "$PY" -m pytest -q -rs tests/common/test_kernels.py tests/common/test_kernels_gpu.py \
    tests/common/test_cupy_codegen.py \
    --junitxml "$OUT/pytest.xml" 2>&1 | tee "$OUT/pytest.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
else
  echo "pytest is not installed (put its wheel in WHEEL_DIR); tests skipped" | tee "$OUT/pytest.log"
  rc=1
fi

peers=fused,cupy,torch
"$PY" -c "import spikingjelly" 2>/dev/null && peers=$peers,spikingjelly
timeout 130 "$PY" speed/bench.py --device cuda --impl "loop,$peers" --mode train --T 4,16,64 \
  --N 65536,1048576 --no-plots --out "$OUT/bench" 2>&1 | tee "$OUT/bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
echo "gpu_check: exit $rc; results in $OUT"
exit $rc
