#!/usr/bin/env bash
# The GPU path's device check in one command (issue 14; what it measures: bench/gpu_check.py).
#
#   bench/gpu_check.sh [--texts N] [--deadline S] [...]      (bench/gpu_check.py --help lists the options)
#
# Made for a lent GPU machine, which has no network and maybe no venv: it uses the first Python that can
# import onnxruntime (PYTHON if set, else .venv/bin/python, then python3), imports the serving library from
# the source tree (no install), and says what is missing before it starts; the parts that can run still run.
# It ends by itself inside 8 minutes (the worker drain stops at --deadline, 450 s by default, and reports
# the rate of what it answered); the outer timeout is only a safety net. Raw JSON: bench/results/.
set -uo pipefail
cd "$(dirname "$0")/.."

has_onnxruntime() { "$1" -c 'import onnxruntime' >/dev/null 2>&1; }

if [ -n "${PYTHON:-}" ]; then
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        echo "gpu_check: PYTHON=$PYTHON is not an executable" >&2
        exit 2
    fi
    if ! has_onnxruntime "$PYTHON"; then
        echo "gpu_check: PYTHON=$PYTHON cannot import onnxruntime (install onnxruntime-gpu, or onnxruntime" \
            "for the CPU fallback)" >&2
        exit 2
    fi
    PY=$PYTHON
else
    PY=""
    for candidate in .venv/bin/python python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && has_onnxruntime "$candidate"; then
            PY=$candidate
            break
        fi
    done
    if [ -z "$PY" ]; then
        echo "gpu_check: no Python that imports onnxruntime (tried .venv/bin/python, python3, python);" \
            "install onnxruntime-gpu or set PYTHON=/path/to/python" >&2
        exit 2
    fi
fi

echo "gpu_check: $("$PY" -c 'import sys, onnxruntime as o
print(sys.executable, sys.version.split()[0], "onnxruntime", o.__version__, "providers", o.get_available_providers())')"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L || echo "gpu_check: nvidia-smi found, but it lists no GPU"
else
    echo "gpu_check: nvidia-smi not found: no NVIDIA driver visible, the CPU fallback is measured"
fi
echo "gpu_check: load at start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null), $(nproc 2>/dev/null) cores"

export PYTHONPATH="$PWD/layers/serving:$PWD/containers/worker:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec timeout --signal=TERM --kill-after=10 475 "$PY" -m bench.gpu_check "$@"
