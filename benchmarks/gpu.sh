#!/usr/bin/env bash
# One-call GPU check of nlpkd: step figures in fp32, bf16 and fp16, the default job end to end in bf16, an fp16
# distillation that watches the grad scaler, and ONE Markdown table of it all (OUT_DIR/gpu_check.md).
#
#   bash benchmarks/gpu.sh [OUT_DIR]          # on a machine with one CUDA device (about 5 minutes)
#   bash benchmarks/gpu.sh --cpu [OUT_DIR]    # dry run: tiny versions of every step on the CPU (about 5 minutes)
#
# Needs no package registry: run `python benchmarks/gpu_prepare.py` first where pip works, and carry the
# folder it writes (.gpu, git-ignored) to the GPU machine; see docs/performance.md ("On a GPU").
# OUT_DIR defaults to $OUT (the device tool's folder), else benchmarks/results/gpu ($WORK/out with --cpu).
# Environment: PYTHON (default python3), CARRY (default .gpu), WORK (default /tmp/nlpkd-gpu).
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
OUT_DIR=""
for arg in "$@"; do
    case "$arg" in
        --cpu) MODE=cpu ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) OUT_DIR="$arg" ;;
    esac
done
PY="${PYTHON:-python3}"
CARRY="${CARRY:-.gpu}"
WORK="${WORK:-/tmp/nlpkd-gpu}"
if [ "$MODE" = gpu ]; then
    OUT_DIR="${OUT_DIR:-${OUT:-benchmarks/results/gpu}}"
else
    OUT_DIR="${OUT_DIR:-$WORK/out}"
fi
mkdir -p "$OUT_DIR" "$WORK"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
: >"$OUT_DIR/stages.tsv"

if [ "$MODE" = gpu ]; then
    # The real check: BERT-base first (its bf16 throughput is the target), then the MiniLM.
    BENCH=(--device cuda --case bert-base,minilm --precision fp32,bf16,fp16 --rounds 1 --steps 15)
    JOB=(--bf16 --num_train_epochs 4)
    FP16=(--steps 150)
    LIMITS=(60 240 120 90)
else
    # Tiny versions of the same steps, on the CPU: they check the plumbing, not the figures.
    BENCH=(--device cpu --case tiny --precision fp32,bf16,fp16 --warmup 1 --steps 1 --rounds 1
        --memory_seq_len 64)
    JOB=(--bf16 --use_cpu --num_train_epochs 1 --teacher_num_train_epochs 1 --max_train_samples 128
        --per_device_train_batch_size 8 --max_eval_samples 64 --max_length 32 --latency_batches 1
        --latency_repeats 1 --logging_steps 2)
    FP16=(--steps 12 --use_cpu --max_train_samples 384 --max_eval_samples 128)
    LIMITS=(120 300 300 300)
fi

# stage NAME LIMIT_SECONDS LOG COMMAND...: run with a time limit (its output to LOG unless LOG is -), record
# "name exit seconds" in stages.tsv; a failing stage does not stop the others.
stage() {
    local name="$1" limit="$2" log="$3" start rc
    shift 3
    echo "=== $name (limit ${limit} s) $(date +%T)"
    start=$(date +%s)
    if [ "$log" = - ]; then
        timeout --kill-after=10 "$limit" "$@"
    else
        timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    fi
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - start))" >>"$OUT_DIR/stages.tsv"
    echo "=== $name: exit $rc after $(($(date +%s) - start)) s"
    return $rc
}

run_all() {
    stage setup "${LIMITS[0]}" - "$PY" benchmarks/gpu_check.py setup --carry "$CARRY" --work "$WORK" &&
        stage preflight 60 - "$PY" benchmarks/gpu_check.py preflight ||
        echo "set-up failed: the stages below will say what is missing"

    stage bench "${LIMITS[1]}" - "$PY" benchmarks/bench.py "${BENCH[@]}" --verbose \
        --json "$OUT_DIR/bench.json" --markdown "$OUT_DIR/bench.md"

    rm -rf "$WORK/job-bf16"
    stage job "${LIMITS[2]}" "$OUT_DIR/job_bf16.log" "$PY" -m nlpkd distill --output_dir "$WORK/job-bf16" \
        --disable_tqdm true "${JOB[@]}"
    tail -n 12 "$OUT_DIR/job_bf16.log"
    "$PY" benchmarks/gpu_check.py job --log "$OUT_DIR/job_bf16.log" --output_dir "$WORK/job-bf16" \
        --json "$OUT_DIR/job_bf16.json"

    stage fp16 "${LIMITS[3]}" - "$PY" benchmarks/gpu_check.py fp16 --teacher "$WORK/job-bf16/teacher" \
        --work "$WORK" --json "$OUT_DIR/fp16.json" "${FP16[@]}"

    "$PY" benchmarks/gpu_check.py table --dir "$OUT_DIR"
    echo "table: $OUT_DIR/gpu_check.md"
}

# Through a pipe rather than `exec > >(tee ...)`, so that the log is complete when the script returns.
run_all 2>&1 | tee "$OUT_DIR/gpu.log"
# Exit 0 only when every stage exited 0; PASS and MISS are in the table.
! cut -f2 "$OUT_DIR/stages.tsv" | grep -qv '^0$'
