#!/usr/bin/env bash
# Samples per second of vit generate with and without the key/value cache (issue 50), on models of the experiment's
# shape (width 128, 4 layers, 4 heads; local 1-D blocks of 256, or local 2-D blocks of 8x16 with a flange of 8x16)
# made by one training step. Nothing else may run meanwhile.
#   VIT=runs/bin/vit-COMMIT bash docs/generation-speed.sh
set -euo pipefail
VIT=${VIT:-.build/release/vit}
shape=(--width 128 --depth 4 --heads 4 --max-steps 1 --eval-images 16)
[ -d runs/gen-speed/fmnist ] || "$VIT" train --task generation --data /usr/share/datasets/fashion-mnist -o runs/gen-speed/fmnist "${shape[@]}"
[ -d runs/gen-speed/cifar ] || "$VIT" train --task generation --data ../shared/data/cifar10-jpg.tar.gz -o runs/gen-speed/cifar "${shape[@]}"
[ -d runs/gen-speed/cifar2d ] || "$VIT" train --task generation --data ../shared/data/cifar10-jpg.tar.gz -o runs/gen-speed/cifar2d \
    "${shape[@]}" --query-shape 8,16 --memory-flange 8,16
for set in fmnist cifar cifar2d; do
    for precision in bf16 fp32; do
        [ "$precision" = bf16 ] && ! grep -q avx512_bf16 /proc/cpuinfo && continue
        "$VIT" generate --model runs/gen-speed/$set -n 16 --seed 0 --precision $precision -o runs/gen-speed/$set-cached-$precision.png 2>/dev/null
    done
done
"$VIT" generate --model runs/gen-speed/fmnist -n 16 --seed 0 --no-cache -o runs/gen-speed/fmnist-uncached.png 2>/dev/null
cmp runs/gen-speed/fmnist-uncached.png runs/gen-speed/fmnist-cached-bf16.png && echo "the same images with and without the cache"
