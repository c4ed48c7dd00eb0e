#!/bin/bash
# Images per second of supervised training, MAE and HPM pre-training of the built-in architecture, measured in
# interleaved rounds so that each round's numbers share the machine's state (README, "Pre-training"). Each rate is
# (steps of a long run - steps of a short run) x batch / (wall time of the long run - wall time of the short run),
# which cancels start-up (reading the data, building the model) and the checkpoint written at the end.
# Run it with the machine otherwise idle: another training on these two cores halves every number.
#
#   bash scripts/pretraining-throughput.sh [VIT] [ROUNDS]      # VIT: default .build/release/vit; ROUNDS: default 6
#   PRECISION=fp32 bash scripts/pretraining-throughput.sh ...   # default bf16 (mixed precision), as the experiment
set -euo pipefail
cd "$(dirname "$0")/.."
VIT=${1:-.build/release/vit}
ROUNDS=${2:-6}
SUBSET=${SUBSET:-/tmp/sub5k}  # every 10th CIFAR-10 training image (5,000), made once from the shared archive

if [ ! -d "$SUBSET" ]; then
    archive=../shared/data/cifar10-jpg.tar.gz
    mkdir -p "$SUBSET"
    tar -tzf "$archive" | grep -E 'train/.*\.jpg$' | awk 'NR % 10 == 0' > "$SUBSET.list"
    tar -xzf "$archive" -C "$SUBSET" -T "$SUBSET.list"
fi

PRECISION=${PRECISION:-bf16}  # as the experiment (docs/pretraining/experiment.sh); PRECISION=fp32 for the other
SUPERVISED="--precision $PRECISION --data $SUBSET --epochs 30 --warmup 3 --pooling avg --randaugment 2,9 --random-erasing 0.25 --drop-path 0.1"
PRETRAIN="--precision $PRECISION --data $SUBSET --epochs 100 --blr 1e-3 --norm-pix-loss --decoder-depth 1 --decoder-width 128 --decoder-heads 4"
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT

# seconds STEPS COMMAND...: wall time of COMMAND stopped after STEPS steps
seconds() {
    local steps=$1
    shift
    rm -rf "$run/out"
    local start end
    start=$(date +%s.%N)
    "$VIT" "$@" --max-steps "$steps" -o "$run/out" > /dev/null 2>&1
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

# rate SHORT LONG BATCH COMMAND...: images per second between the two stops
rate() {
    local short=$1 long=$2 batch=$3
    shift 3
    local a b
    a=$(seconds "$short" "$@")
    b=$(seconds "$long" "$@")
    echo "($long - $short) * $batch / ($b - $a)" | bc -l
}

printf '%-6s %12s %8s %8s %14s\n' round supervised mae hpm "mae/supervised"
for round in $(seq "$ROUNDS"); do
    s=$(rate 3 19 128 train $SUPERVISED)
    m=$(rate 2 12 256 pretrain --method mae $PRETRAIN)
    h=$(rate 2 8 256 pretrain --method hpm $PRETRAIN)
    printf '%-6s %12.1f %8.1f %8.1f %14.2f\n' "$round" "$s" "$m" "$h" "$(echo "$m / $s" | bc -l)"
done
