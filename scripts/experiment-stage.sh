# Sourced by the experiment scripts (docs/*/experiment.sh), from the repository root, with VIT and DATA set.
#
# run NAME EPOCHS SUBCOMMAND OPTIONS...: brings runs/NAME from where it stands to EPOCHS epochs. A run whose
# metrics.jsonl holds its last epoch is skipped; one with a checkpoint is resumed with only its data and epoch count
# (it keeps the recipe saved with it); otherwise it starts with OPTIONS. Output is appended to runs/NAME/log.
run() {
    local name=$1 epochs=$2
    shift 2
    local folder=runs/$name
    if [ -f "$folder/metrics.jsonl" ] && [ "$(tail -n 1 "$folder/metrics.jsonl" | sed 's/.*"epoch":\([0-9]*\).*/\1/')" -ge "$epochs" ]; then
        echo "$name: done ($epochs epochs)"
        return
    fi
    mkdir -p "$folder"
    if [ -f "$folder/checkpoint.safetensors" ]; then
        echo "$name: $VIT $1 --data $DATA --epochs $epochs -o $folder --resume  (log: $folder/log)"
        "$VIT" "$1" --data "$DATA" --epochs "$epochs" -o "$folder" --resume >> "$folder/log" 2>&1
    else
        echo "$name: $VIT $* -o $folder  (log: $folder/log)"
        "$VIT" "$@" -o "$folder" >> "$folder/log" 2>&1
    fi
}
