#!/usr/bin/env bash
# The checks we run on a lent GPU machine, in one go (device time is scarce):
#   1. the CUDA tests (tests/recording/test_cuda.py),
#   2. benchmarks/sampled_step.py on CUDA (ops, kernel launches, ms), for this tree and, when
#      .before/src holds an older recorder (git archive OLD src | tar -x -C .before), for it;
#      the same counts for ResNet-50 at its GPU-size batch (the kernels that --device meta
#      counted as operators: 3098 -> 618 at 3f00606 -> 3c5f02f, never measured as kernels);
#      benchmarks/step_profile.py for W2 and RESNET50 (the budget's cost breakdown, a host
#      profile: ResNet-50's sampled step is the one not yet explained on a GPU), and
#      benchmarks/hook_fusion.py (one hook per layer and activation, against separate ones),
#   3. benchmarks/overhead.py --device cuda (GPU-size batches) into docs/performance.md's
#      GPU blocks (W1-W4, GPT2, RESNET50; then W1+compile, whose compilation takes longest).
# Every stage has its own time limit and goes on when one fails. Logs, JSON and the rewritten
# docs/performance.md go to $OUT (default ./gpu-out). Usage:
#   GRADWATCH_COMMIT=<hash> bash benchmarks/gpu_check.sh [quick|checks|tables|full|lease|rest|compiled]
# quick: 1-2 and a short W1/W2 table (~6 min); checks: 1-2 (~5.5 min); tables: 3 (~6.5 min);
# full: all (~12 min): more than one command of the device tool may run (10 min), so on such
# a machine run checks and tables as two commands, the tables first when time is short.
# lease: what fits one 10-minute command when the lease (15 min, the start included) allows
# little more, most telling first: the tables, W1's kernel count, the CUDA tests, ResNet-50's
# kernels and profile, then the compiled table (~9.5 min); rest: the other checks (~2 min).
# compiled: the compiled table alone with GPT-2 and ResNet-50 at their GPU-size batches beside
# W1 (until 2026-12-01 the +compile workloads ran their eager model: W1+compile's table so far
# is eager; compiling now takes Inductor's time too, so lease's 100 s for it may not suffice).
set -u
mode=${1:-full}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
py=${PYTHON:-python3}
here=src
# The device tool brings back 8 files at most: lease and rest keep every stage's log in one.
one_log=
case $mode in lease | rest) one_log="$OUT/$mode.txt" ;; esac
run() {  # run LIMIT_S NAME COMMAND...: one stage, its output in $OUT/NAME.txt (or one_log)
    local limit=$1 name=$2 log="$OUT/$2.txt"
    shift 2
    [ -n "$one_log" ] && log=$(mktemp)
    echo "== $name ($(date +%T))"
    timeout "$limit" "$@" >"$log" 2>&1
    echo "   exit $? ($(date +%T))"
    tail -n 25 "$log"
    if [ -n "$one_log" ]; then
        { echo "== $name"; cat "$log"; } >>"$one_log"
    fi
}
{ nvidia-smi -L; $py -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"; } 2>&1 | tee "$OUT/env.txt"
if [ "$mode" = lease ]; then
    run 300 overhead env PYTHONPATH=$here $py benchmarks/overhead.py --device cuda --threads 4 \
        --workloads W1 W2 W3 W4 GPT2 RESNET50 --markdown docs/performance.md
    cp docs/performance.md "$OUT/performance.md"
    run 50 sampled_after env PYTHONPATH=$here $py benchmarks/sampled_step.py --device cuda --threads 4 --steps 60
    run 60 cuda_tests env PYTHONPATH=$here $py -m pytest -q -p no:cacheprovider tests/recording/test_cuda.py
    run 60 sampled_resnet50 env PYTHONPATH=$here $py benchmarks/sampled_step.py --device cuda --threads 4 --workload RESNET50 --gpu-batch
    run 60 profile_resnet50 env PYTHONPATH=$here $py benchmarks/step_profile.py RESNET50 --device cuda --threads 4 --steps 40 --everything
    run 100 overhead_compile env PYTHONPATH=$here $py benchmarks/overhead.py --device cuda --threads 4 \
        --workloads W1+compile --markdown docs/performance.md --docs-block gpu-compile
    cp docs/performance.md "$OUT/performance.md"
    exit 0
fi
if [ "$mode" = compiled ]; then
    run 540 overhead_compile env PYTHONPATH=$here $py benchmarks/overhead.py --device cuda --threads 4 \
        --workloads W1+compile GPT2+compile RESNET50+compile --markdown docs/performance.md \
        --docs-block gpu-compile
    cp docs/performance.md "$OUT/performance.md"
    exit 0
fi
if [ "$mode" = rest ]; then
    run 45 profile_w2 env PYTHONPATH=$here $py benchmarks/step_profile.py W2 --device cuda --threads 4 --steps 800
    run 60 hook_fusion env PYTHONPATH=$here $py benchmarks/hook_fusion.py --device cuda --threads 4 --workloads W1 --steps 300
    exit 0
fi
if [ "$mode" != tables ]; then
    run 60 cuda_tests env PYTHONPATH=$here $py -m pytest -q -p no:cacheprovider tests/recording/test_cuda.py
    run 60 sampled_after env PYTHONPATH=$here $py benchmarks/sampled_step.py --device cuda --threads 4 --steps 60 --json "$OUT/sampled_after.json"
    if [ -d .before/src ]; then
        run 60 sampled_before env PYTHONPATH=.before/src $py benchmarks/sampled_step.py --device cuda --threads 4 --steps 60 --json "$OUT/sampled_before.json"
    fi
    run 90 sampled_resnet50 env PYTHONPATH=$here $py benchmarks/sampled_step.py --device cuda --threads 4 --workload RESNET50 --gpu-batch --json "$OUT/sampled_resnet50.json"
    run 45 profile_w2 env PYTHONPATH=$here $py benchmarks/step_profile.py W2 --device cuda --threads 4 --steps 800
    run 60 hook_fusion env PYTHONPATH=$here $py benchmarks/hook_fusion.py --device cuda --threads 4 --workloads W1 --steps 300
    if [ "$mode" = full ] || [ "$mode" = checks ]; then
        run 90 profile_resnet50 env PYTHONPATH=$here $py benchmarks/step_profile.py RESNET50 --device cuda --threads 4 --steps 40 --everything
    fi
fi
if [ "$mode" = quick ]; then
    run 150 overhead_quick env PYTHONPATH=$here $py benchmarks/overhead.py --device cuda --threads 4 --workloads W1 W2 --rounds 6
    exit 0
fi
[ "$mode" = checks ] && exit 0
# (W2 warms up 1600 steps: its automatic flush window grows over the first 1500)
run 290 overhead env PYTHONPATH=$here $py benchmarks/overhead.py --device cuda --threads 4 \
    --workloads W1 W2 W3 W4 GPT2 RESNET50 --markdown docs/performance.md
cp docs/performance.md "$OUT/performance.md"
run 100 overhead_compile env PYTHONPATH=$here $py benchmarks/overhead.py --device cuda --threads 4 \
    --workloads W1+compile --markdown docs/performance.md --docs-block gpu-compile
cp docs/performance.md "$OUT/performance.md"
