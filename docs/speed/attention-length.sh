#!/bin/bash
# How the cost per token grows with the sequence: vit bench model at 224, 384 and 448 px (197, 577 and 785 tokens),
# batch 1, in each precision this CPU runs natively; ms per token = ms per image / tokens. The linear layers cost the
# same per token at every length, attention grows with it, so the growth is attention's. Nothing else may run.
#
#   VIT=.build/release/vit bash docs/speed/attention-length.sh > OUT.jsonl; python3 docs/speed/attention-length.py OUT.jsonl
set -euo pipefail
cd "$(dirname "$0")/../.."
VIT=${VIT:-.build/release/vit}
PRECISIONS="fp32 int8"
grep -q avx512_bf16 /proc/cpuinfo && PRECISIONS="fp32 bf16 int8"
for arch in ${MODELS:-vit_small_patch16_224 vit_base_patch16_224}; do
    for size in 224 384 448; do
        for precision in $PRECISIONS; do
            "$VIT" bench model --arch "$arch" --image-size "$size" --precision "$precision" --seconds 4 --json 2>/dev/null
        done
    done
done
