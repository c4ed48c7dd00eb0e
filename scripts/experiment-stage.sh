# Sourced by the experiment scripts (docs/*/experiment.sh), from the repository root, with VIT, DATA and COMMITTED
# set.
#
# runs/ may not survive a change of machine, so what a later stage or the README's table needs is committed as
# $COMMITTED/NAME (docs/pretraining/NAME, say): a finished run's metrics, config and curves, its model when a later
# stage starts from it (--init, --teacher), and the checkpoint of a run stopped at a session's end, which --resume
# continues. restore NAME copies it into a runs/NAME that has no metrics.jsonl; run restores its own run first.

# Mixed precision (bf16 matrix products, fp32 weights and optimiser state; README, "Precision") where the CPU has
# AVX512-BF16: it trains 1.4-1.6x faster than fp32 there, to the same accuracy. Elsewhere bf16 is emulated and 1.6x
# slower than fp32, so fp32. A stage resumed on another host goes on in that host's precision; PRECISION=bf16|fp32
# chooses.
if [ -z "${PRECISION:-}" ]; then grep -qw avx512_bf16 /proc/cpuinfo && PRECISION=bf16 || PRECISION=fp32; fi

restore() {
    if [ ! -f "runs/$1/metrics.jsonl" ] && [ -d "$COMMITTED/$1" ]; then
        echo "$1: restored from $COMMITTED/$1"
        mkdir -p "runs/$1"
        # metrics.jsonl last, by rename: it marks the run as there, so a stop halfway must not leave it without the rest.
        find "$COMMITTED/$1" -maxdepth 1 -type f ! -name metrics.jsonl -exec cp {} "runs/$1/" \;
        cp "$COMMITTED/$1/metrics.jsonl" "runs/$1/metrics.jsonl.restoring" && mv "runs/$1/metrics.jsonl.restoring" "runs/$1/metrics.jsonl"
    fi
}

# run NAME EPOCHS SUBCOMMAND OPTIONS...: brings runs/NAME from where it stands to EPOCHS epochs. A run whose
# metrics.jsonl holds its last epoch is skipped; one with a checkpoint is resumed with only its data, epoch count and
# the --precision and --task of OPTIONS, if any (it keeps the recipe saved with it, but computes in this host's precision);
# otherwise it starts with OPTIONS. Output is appended to runs/NAME/log.
run() {
    local name=$1 epochs=$2
    shift 2
    local folder=runs/$name
    restore "$name"
    # The last epoch metrics.jsonl records; 0 when the file is missing (a new run) or empty (a run stopped in its first
    # epoch). Only an existing file is read: under the scripts' pipefail, tail's failure on a missing one would stop them.
    local done_epochs=""
    if [ -f "$folder/metrics.jsonl" ]; then
        done_epochs=$(tail -n 1 "$folder/metrics.jsonl" | sed -n 's/.*"epoch":\([0-9]*\).*/\1/p')
    fi
    if [ "${done_epochs:-0}" -ge "$epochs" ]; then
        echo "$name: done ($epochs epochs)"
        return
    fi
    mkdir -p "$folder"
    if [ -f "$folder/checkpoint.safetensors" ]; then
        local precision=() task=() previous=""
        for option in "$@"; do
            [ "$previous" = --precision ] && precision=(--precision "$option")
            [ "$previous" = --task ] && task=(--task "$option")
            previous=$option
        done
        echo "$name: $VIT $1 ${task[*]} --data $DATA --epochs $epochs ${precision[*]} -o $folder --resume  (log: $folder/log)"
        "$VIT" "$1" "${task[@]}" --data "$DATA" --epochs "$epochs" "${precision[@]}" -o "$folder" --resume >> "$folder/log" 2>&1
    else
        echo "$name: $VIT $* -o $folder  (log: $folder/log)"
        "$VIT" "$@" -o "$folder" >> "$folder/log" 2>&1
    fi
}
