# bench-common.sh: shared set-up of scripts/bench-*.sh (sourced, not run).
# Finds or builds flowscore (Release), the PyTorch peer and the shared/ bench folder.
set -euo pipefail
FS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${FS_SHARED_DIR:-$FS_ROOT/../shared}
BUILD=${FS_BUILD_DIR:-$FS_ROOT/build-bench}
PEER_PY=/usr/bin/python3
PEER="$SHARED/bench/peer_torch.py"
RUNS=${FS_BENCH_RUNS:-3}

# OpenBLAS picks its kernels from the CPU it recognises. 0.3.21 takes some recent CPUs (e.g.
# Sapphire Rapids under a hypervisor) for a Prescott and runs SSE3 kernels, about 3x slower.
# FS_BENCH_CORETYPE (e.g. Haswell, SkylakeX, Zen) sets OPENBLAS_CORETYPE for flowscore and the
# peer alike; the core in use is printed either way.
if [ -n "${FS_BENCH_CORETYPE:-}" ]; then
    export OPENBLAS_CORETYPE=$FS_BENCH_CORETYPE
fi
openblas_core() {
    "$PEER_PY" -c 'import ctypes
l = ctypes.CDLL("libopenblas.so.0")
l.openblas_get_corename.restype = ctypes.c_char_p
print(l.openblas_get_corename().decode())' 2>/dev/null || echo unknown
}
OPENBLAS_CORE=$(openblas_core)
echo "bench: OpenBLAS kernels: $OPENBLAS_CORE" >&2

bench_build() {
    if [ ! -x "$BUILD/tests/fs_bench" ]; then
        cmake -S "$FS_ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    fi
    cmake --build "$BUILD" -j"$(nproc)" --target fs_bench flowscore >/dev/null
}

# The peer needs Debian's torch and scikit-learn (../shared/bench/README.md).
bench_have_peer() {
    if [ ! -f "$PEER" ]; then
        echo "bench: $PEER not found: peer figures are skipped" >&2
        return 1
    fi
    if ! "$PEER_PY" -c 'import torch, sklearn' 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "bench: installing python3-torch python3-sklearn for the peer" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-sklearn \
                >/dev/null
        else
            echo "bench: the peer needs python3-torch and python3-sklearn (apt-get install)" >&2
            return 1
        fi
    fi
    return 0
}

# median FIELD FILE: the median of a numeric JSON field over the lines of FILE.
median() {
    "$PEER_PY" -c '
import json, statistics, sys
vals = [json.loads(l)[sys.argv[1]] for l in open(sys.argv[2]) if l.strip()]
print(statistics.median(vals) if vals else "null")' "$1" "$2"
}
