#!/usr/bin/env bash
# Samples per second of vit generate with and without the key/value cache (issue 50), on models of the experiment's
# shape (width 128, 4 layers, 4 heads, blocks of 256) made by one training step. Nothing else may run meanwhile.
#   VIT=runs/bin/vit-COMMIT bash docs/generation-speed.sh
set -euo pipefail
VIT=${VIT:-.build/release/vit}
for set in fmnist cifar; do
    for precision in bf16 fp32; do
        [ "$precision" = bf16 ] && ! grep -q avx512_bf16 /proc/cpuinfo && continue
        "$VIT" generate --model runs/gen-speed/$set -n 16 --seed 0 --precision $precision -o runs/gen-speed/$set-cached-$precision.png 2>/dev/null
    done
done
"$VIT" generate --model runs/gen-speed/fmnist -n 16 --seed 0 --no-cache -o runs/gen-speed/fmnist-uncached.png 2>/dev/null
cmp runs/gen-speed/fmnist-uncached.png runs/gen-speed/fmnist-cached-bf16.png && echo "the same images with and without the cache"
