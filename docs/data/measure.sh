#!/usr/bin/env bash
# Issue 49's evidence at size: streamed training at flat memory, and decoders against training speed.
#   VIT=runs/bin/vit-COMMIT bash docs/data/measure.sh        (after scripts/make-cifar224-shards.py wrote runs/cifar224)
# Writes docs/data/measurements.jsonl (one line per measurement) and prints a table. Nothing else may run meanwhile.
set -euo pipefail
VIT=${VIT:-.build/release/vit}
DATA=${DATA:-runs/cifar224}
OUT=docs/data/measurements.jsonl
STEPS=${STEPS:-30}
mkdir -p runs/data-measure
: > "$OUT"
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | xargs)
bf16=$(grep -c avx512_bf16 /proc/cpuinfo || true)
echo "{\"kind\":\"machine\",\"cpu\":\"$cpu\",\"cores\":$(nproc),\"avx512_bf16\":$([ "$bf16" -gt 0 ] && echo true || echo false)}" >> "$OUT"

# Decoding: 224 px JPEG -> decoded, resized, vit train's default augmentation, normalised.
for workers in 1 2; do
    line=$("$VIT" bench data --data "$DATA/train-{000000..000099}.tar" --workers "$workers" --batch-size 32 --batches 200 --json)
    echo "{\"kind\":\"decode\",${line#\{}" >> "$OUT"
done

# Training steps of ViT-Ti/16 and ViT-S/16 at 224 px, batch 32, without data.
for arch in vit_tiny_patch16_224 vit_small_patch16_224; do
    for precision in fp32 bf16; do
        [ "$precision" = bf16 ] && [ "$bf16" -eq 0 ] && continue
        line=$("$VIT" bench model --arch "$arch" --train --batch-size 32 --precision "$precision" --seconds 10 --json)
        echo "{\"kind\":\"train-step\",${line#\{}" >> "$OUT"
    done
done

# Peak memory of a fine-tuning run of ViT-Ti/16 (--init of a vit create folder: this machine has no network for
# published weights) for $STEPS steps on 1, 10 and all 100 training shards, streamed; and in memory for 1 and 10.
[ -d runs/data-measure/vit-ti16 ] || "$VIT" create --arch vit_tiny_patch16_224 -o runs/data-measure/vit-ti16 > /dev/null
peak() {  # name, reading, shard list
    local name=$1 reading=$2 list=$3 log=runs/data-measure/$1.log
    rm -rf "runs/data-measure/run-$name"
    /usr/bin/time -v "$VIT" train --data "$list" --init runs/data-measure/vit-ti16 --data-reading "$reading" \
        --batch-size 32 --precision bf16 --max-steps "$STEPS" -o "runs/data-measure/run-$name" > "$log" 2>&1
    local kb seconds images
    kb=$(grep "Maximum resident set size" "$log" | awk '{print $NF}')
    seconds=$(grep "Elapsed (wall clock)" "$log" | awk '{print $NF}')
    images=$(grep -m1 -o "^[0-9]* training images" "$log" | awk '{print $1}')
    echo "{\"kind\":\"peak-rss\",\"name\":\"$name\",\"reading\":\"$reading\",\"shards\":\"$list\",\"training_images\":$images,\"steps\":$STEPS,\"max_rss_kb\":$kb,\"wall\":\"$seconds\"}" >> "$OUT"
}
peak stream-1 stream "$DATA/train-000000.tar"
peak stream-10 stream "$DATA/train-{000000..000009}.tar"
peak stream-100 stream "$DATA/train-{000000..000099}.tar"
peak memory-1 memory "$DATA/train-000000.tar"
peak memory-10 memory "$DATA/train-{000000..000009}.tar"
cat "$OUT"
