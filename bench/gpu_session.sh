#!/usr/bin/env bash
# One GPU session's checks in one call (docs/gpu.md, "A GPU session"): build in place, the whole
# suite, compute-sanitizer, the benches, ptxas -v; each step capped from one deadline, every log
# and JSON kept in one archive under $OUT that is rewritten after each step (so what ran comes
# back even when the call is cut), and a table (step, status, seconds) printed last.
#
#   bash bench/gpu_session.sh             # on a GPU host (run tool: OUT is set)
#   bash bench/gpu_session.sh --dry-run   # anywhere: the deadline, archive and table logic, each
#                                         # step's command printed and $GPU_SESSION_DRY_CMD run
#                                         # instead (default `true`; $STEP is the step's name)
#
# Environment: GPU_SESSION_SECONDS (whole budget, default 480), GPU_SESSION_CXX (default
# /usr/bin/g++: a compiler linking libstdc++ shared, as torch's libraries do; issue 17),
# COMPNET_CUDA_ARCH (default 9.0), PYTHON (default python3), OUT (default ./gpu-session-out).
# The logs and bench JSONs go to bench/results/gpu-session-<GPU>-<date>/; the archive holds that
# folder with repo-relative paths: `tar -xzf gpu_session.tar.gz` in the repo root puts it back.
# To add a step: one `step NAME SHARE COMMAND...` line below; SHARE is its part of the budget.
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
PY=${PYTHON:-python3}
OUT=${OUT:-$REPO/gpu-session-out}
BUDGET=${GPU_SESSION_SECONDS:-480}
DEADLINE=$(( $(date +%s) + BUDGET ))
CXX_USED=${GPU_SESSION_CXX:-/usr/bin/g++}
ARCH=${COMPNET_CUDA_ARCH:-9.0}
DRY_CMD=${GPU_SESSION_DRY_CMD:-true}
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=1

if [ $DRY = 1 ]; then
    GPU=dry-run
elif ! GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1) \
        || [ -z "$GPU" ]; then
    echo "gpu_session: no GPU here (nvidia-smi finds none); nothing run." \
         "bash bench/gpu_session.sh --dry-run checks the script itself." >&2
    exit 2
fi
W=bench/results/gpu-session-${GPU// /-}-$(date -u +%Y-%m-%d)
mkdir -p "$W" "$OUT"
ROWS=()
REFRESHER=
# The steps' shares of the budget, in order; a step's cap is its share of the time left over
# the shares left, so time a step does not use goes to the later ones.
SHARES_LEFT=0

archive() {
    tar -czf "$OUT/gpu_session.tar.gz.tmp" -C "$REPO" "$W" && \
        mv "$OUT/gpu_session.tar.gz.tmp" "$OUT/gpu_session.tar.gz"
}

table() {
    { printf '| step | status | seconds |\n|---|---|---|\n'
      printf '%s\n' "${ROWS[@]}"
      echo "budget ${BUDGET} s; compiler $CXX_USED; logs and JSON: $W (archive: $OUT/gpu_session.tar.gz)"
    } > "$W/table.md"
}

step() {  # step NAME SHARE COMMAND...: runs COMMAND capped, logs to $W/NAME.log, adds a row
    local name=$1 share=$2; shift 2
    local left=$(( DEADLINE - $(date +%s) ))
    local cap=$(( left * share / SHARES_LEFT ))
    SHARES_LEFT=$(( SHARES_LEFT - share ))
    [ "$cap" -lt 10 ] && cap=$(( left < 10 ? left : 10 ))  # a short step still gets its chance
    local status t0=$(date +%s) rc
    if [ "$cap" -lt 5 ]; then
        status="skipped (deadline)"
    else
        # the archive also refreshed while a step runs: a call cut mid-step keeps its log so far
        ( trap 'kill $nap 2>/dev/null; exit' TERM
          while :; do sleep 20 & nap=$!; wait $nap; archive; done ) & REFRESHER=$!
        {   echo "\$ $*"; echo "# cap ${cap} s"
            if [ $DRY = 1 ]; then
                STEP=$name timeout -k 5 "$cap" bash -c "$DRY_CMD"
            else
                timeout -k 5 "$cap" "$@"
            fi
        } > "$W/$name.log" 2>&1 < /dev/null
        rc=$?
        kill "$REFRESHER" 2>/dev/null; wait "$REFRESHER" 2>/dev/null; REFRESHER=
        case $rc in
            0) status=ok ;;
            124|137) status="TIMEOUT (cap ${cap} s)" ;;
            *) status="FAILED (rc $rc)" ;;
        esac
    fi
    ROWS+=("| $name | $status | $(( $(date +%s) - t0 )) |")
    echo "gpu_session: $name: $status" >&2
    table; archive
}

ptxas() {  # register use and spills of every kernel file (plain nvcc, as CI compiles them)
    local f pids=()
    for f in csrc/*/kernels.cu; do
        nvcc -std=c++17 -O3 --fmad=false -arch="sm_${ARCH/./}" -Xptxas -v -c "$f" \
            -o "/tmp/gpu_session-$(basename "$(dirname "$f")").o" &
        pids+=($!)
    done
    local rc=0 p
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    return $rc
}
export -f ptxas; export ARCH

ncu_profile() {  # Nsight Compute on the headline kernels (bench/ncu_kernels.py), text to the log
    local ncu
    ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)
    [ -n "$ncu" ] || { echo "ncu not found"; return 3; }
    "$ncu" --clock-control none --profile-from-start off --section SpeedOfLight \
        --section ComputeWorkloadAnalysis --section SchedulerStats --section WarpStateStats \
        --section Occupancy --section LaunchStats "$PY" bench/ncu_kernels.py
}
export -f ncu_profile; export PY

{ date -u; echo "compiler: $CXX_USED ($("$CXX_USED" --version 2>&1 | head -1))"
  [ $DRY = 1 ] || nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1
  git -C "$REPO" log -1 --oneline 2>&1; git -C "$REPO" status --short 2>&1 | head -20
} > "$W/env.txt"
exec 3>&1 4>&2  # the trap runs inside a step's redirection: it writes to these
trap 'echo "gpu_session: stopped" >&4; [ -n "$REFRESHER" ] && kill "$REFRESHER"
      table; archive; cat "$W/table.md" >&3; exit 130' INT TERM

SHARES_LEFT=100  # the sum of the shares below
step build        17 env CXX="$CXX_USED" COMPNET_CUDA=1 COMPNET_CUDA_ARCH="$ARCH" MAX_JOBS=16 "$PY" setup.py build_ext --inplace
step link          1 bash -c 'f=$(ls compnet_ext/_C*.so) && readelf -d "$f" | grep NEEDED && ldd "$f" | grep -E "stdc|gomp"'
step suite        16 "$PY" -m pytest -n 16 -q -rfEs tests --ignore tests/test_cuda_emulated.py
step memcheck      5 compute-sanitizer --tool memcheck --error-exitcode 9 "$PY" tests/cuda_harness/device_smoke.py
step racecheck     6 compute-sanitizer --tool racecheck --error-exitcode 9 "$PY" tests/cuda_harness/device_smoke.py
step synccheck     5 compute-sanitizer --tool synccheck --error-exitcode 9 "$PY" tests/cuda_harness/device_smoke.py
step ops           6 "$PY" bench/bench_ops.py --device cuda --no-compile --repeats 7 --tag=-nocompile --out "$W"
step depths       2 "$PY" bench/bench_ops.py --device cuda --no-compile --dtype float32 float64 --S 4096 --D 12 16 24 32 --N 512 --repeats 5 --tag=-depths --out "$W"
step percall      2 "$PY" bench/bench_percall.py --device cuda --profile --out "$W"
step percall-big  2 "$PY" bench/bench_percall.py --device cuda --config 4096 16 512 --profile --out "$W"
step ops-compile   5 "$PY" bench/bench_ops.py --device cuda --compile --compile-cap 25 --dtype float32 --config 4096 16 512 --config 30 5 500 --repeats 7 --out "$W"
step stage1        5 bash -c "'$PY' bench/bench_stages.py --stage1 --device cuda --repeats 1 --out '$W' && '$PY' bench/bench_stages.py --stage1 --device cuda --repeats 1 --epochs 200 --dtype float64 --out '$W'"
step stage2        5 bash -c "'$PY' bench/bench_stages.py --device cuda --out '$W' && '$PY' bench/bench_stages.py --device cuda --dtype float64 --out '$W'"
step reproduce     5 "$PY" bench/bench_reproduce.py --device cuda --repeats 1 --profile --out "$W"
step mlp           2 "$PY" bench/bench_mlp.py --device cuda --out "$W"
step ptxas         2 bash -c ptxas
step ncu           4 bash -c ncu_profile
# last: rebuilds in place with float64 sweeps capped at 8 warps per seed (256-thread bound, no
# spills, half the warps per SM; docs/gpu.md) and times the fp64 rows against the ops step's
step fp64-warps8  10 bash -c "env CXX='$CXX_USED' COMPNET_CUDA=1 COMPNET_CUDA_ARCH='$ARCH' COMPNET_FP64_WARPS=8 MAX_JOBS=16 '$PY' setup.py build_ext --inplace > '$W/fp64-warps8-build.log' 2>&1 && '$PY' bench/bench_ops.py --device cuda --no-compile --dtype float64 --config 4096 16 512 --config 30 5 500 --repeats 7 --tag=-nocompile-fp64warps8 --out '$W'"
trap - INT TERM
cat "$W/table.md"
