#!/usr/bin/env bash
# The prepared GPU check: at most 8 minutes on one H100 / H200, from a bare machine with a package index only.
#
#   bash benchmarks/gpu/run.sh [--out DIR]      # on the GPU machine: writes DIR/gpu_results.json and .md
#   bash benchmarks/gpu/run.sh --dry-run [--out DIR]   # on a CPU: every part's wiring in seconds
#
# Parts, in order, each under a time limit cut to what is left of the 8 minutes (checks.py says what each does):
# attention (FlashAttention 2), throughput (~1B Llama: CPTTrainer vs Trainer, +/- Liger, +/- compile),
# distributed-step (DeepSpeed ZeRO-2, FSDP, through recipes/accelerate_configs/), labeling (label_topics on
# the GPU), generation (transformers backend, then vLLM, installed last since it pins its own torch). A part
# whose package cannot be installed is recorded as skipped, with the reason; the report is written either way.
set -uo pipefail

cd "$(dirname "$0")/../.."
OUT_DIR=gpu_results
DRY_RUN=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --out) OUT_DIR="$2"; shift ;;
        *) echo "run.sh: unknown argument $1 (use --dry-run and --out DIR)" >&2; exit 2 ;;
    esac
    shift
done
PYTHON=${PYTHON:-python3}
CHECKS=benchmarks/gpu/checks.py
PARTS=attention,throughput,distributed-step,labeling,generation
mkdir -p "$OUT_DIR"

if [ "$DRY_RUN" = 1 ]; then
    bash -n "$0" || exit 1
    exec "$PYTHON" "$CHECKS" dry-run --dry-run --parts "$PARTS" --out "$OUT_DIR"
fi

START=$(date +%s)
TOTAL_S=${GPU_CHECK_SECONDS:-480}
log() { echo "[run.sh +$(( $(date +%s) - START ))s] $*"; }
left() { echo $(( TOTAL_S - 15 - ($(date +%s) - START) )); }  # 15 s kept for the report
# part LIMIT COMMAND...: run COMMAND for at most LIMIT seconds, or what is left if less.
part() {
    local limit=$1; shift
    local budget; budget=$(left)
    [ "$budget" -lt "$limit" ] && limit=$budget
    if [ "$limit" -lt 20 ]; then log "skipped (8-minute budget spent): $*"; return; fi
    log "running (limit ${limit}s): $*"
    timeout "$limit" "$@" || log "ended with status $? (limit ${limit}s): $*"
}
install() {  # install [PIP OPTIONS] PACKAGE within LIMIT seconds, or say why not
    local limit=$1; shift
    local record; record="$OUT_DIR/pip-$(echo "${*: -1}" | tr -c 'a-zA-Z0-9' _).log"
    if timeout "$limit" "$PYTHON" -m pip install -q "$@" >"$record" 2>&1; then
        log "installed $*"
    else
        log "could not install $* within ${limit}s (see $record)"; return 1
    fi
}

log "environment: $("$PYTHON" --version 2>&1), $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | head -1)"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    install 240 torch || { log "no CUDA torch: nothing can run"; exit 1; }
fi
install 120 -e . || exit 1
install 60 "liger-kernel>=0.8.2"
install 90 --no-build-isolation deepspeed
# flash-attn ships as source only on the package index; compiling it takes far longer than this check has.
install 30 --only-binary=:all: flash-attn

part 45 "$PYTHON" "$CHECKS" attention --out "$OUT_DIR"
part 200 "$PYTHON" "$CHECKS" throughput --out "$OUT_DIR" --budget-s "$(( $(left) < 190 ? $(left) : 190 ))" \
    --variants plain,cpt,plain+liger,cpt+liger,plain+compile,cpt+compile,plain+liger+compile,cpt+liger+compile
for config in deepspeed-zero2:deepspeed_zero2.yaml fsdp:fsdp.yaml; do
    part 60 accelerate launch --config_file "recipes/accelerate_configs/${config#*:}" --num_processes 1 \
        --num_machines 1 "$CHECKS" distributed-step --config "${config%%:*}" --name "distributed-step-${config%%:*}" \
        --out "$OUT_DIR"
done
part 40 "$PYTHON" "$CHECKS" labeling --out "$OUT_DIR"
part 45 "$PYTHON" "$CHECKS" generation --backend transformers --name generation-transformers --out "$OUT_DIR"
if [ "$(left)" -gt 90 ] && install "$(( $(left) - 60 ))" vllm; then
    part 120 "$PYTHON" "$CHECKS" generation --backend vllm --name generation-vllm --out "$OUT_DIR"
else
    mkdir -p "$OUT_DIR/parts"
    printf '{"part": "generation-vllm", "status": "skipped", "reason": "%s"}\n' \
        "vllm could not be installed in the time left" >"$OUT_DIR/parts/generation-vllm.json"
fi
"$PYTHON" "$CHECKS" report --out "$OUT_DIR"
log "done: $OUT_DIR/gpu_results.json, $OUT_DIR/gpu_results.md"
