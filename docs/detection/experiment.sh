#!/bin/bash
# The DETR experiment (README, "Detection (DETR)"): one small DETR trained on the synthetic scenes of `vit
# detection-data` (64 px canvases, 1-6 objects of 10-32 px, 20 classes: 10 Fashion-MNIST items, 10 CIFAR-10 photos;
# 2,000 training and 500 validation scenes), (a) from a random backbone and (b) from a backbone first trained as a
# classifier: the ResNet-18 of the distillation experiment (CIFAR's stem, width 32, 88.83% on CIFAR-10), which has seen
# the CIFAR-10 half of the object types and not the Fashion-MNIST half. Everything else is the same: the backbone's
# shape (so (a) is that ResNet with random weights), d_model 128, 4 heads, 3 encoder and 3 decoder layers, 20 queries,
# dropout 0.1, DETR's recipe (AdamW 1e-4, backbone 1e-5, weight decay 1e-4, clipping at 0.1, the rate a tenth from
# epoch 20), batch 16, 30 epochs, fp32, seed 0. Validation AP is computed after every epoch on the 500 validation
# scenes, which no run trains on.
#
# Budget, decided before the runs: 30 epochs each (about 21 minutes alone at the 47 img/s measured on an AVX-512
# EPYC's two cores).
#
#   VIT=runs/bin/vit-COMMIT bash docs/detection/experiment.sh [STAGE ...]   # default: scenes random classifier
set -euo pipefail
cd "$(dirname "$0")/../.."
VIT=${VIT:-.build/release/vit}
DATA=${DATA:-runs/scenes64}
mkdir -p runs
COMMITTED=docs/detection
source scripts/experiment-stage.sh  # run NAME EPOCHS SUBCOMMAND OPTIONS..., restore NAME

DETR="--task detection --data $DATA --epochs 30 --batch-size 16 --width 128 --heads 4 --depth 3 --queries 20 --precision fp32"

stage() {
    case $1 in
    scenes) [ -f "$DATA/instances_val.json" ] || "$VIT" detection-data -o "$DATA" --train 2000 --val 500 --image-size 64 --seed 0 ;;
    random) run detr-random 30 train $DETR --backbone-width 32 --cifar-stem ;;
    classifier) COMMITTED=docs/distillation restore resnet18-w32; run detr-classifier 30 train $DETR --backbone-init runs/resnet18-w32 ;;
    *) echo "unknown stage $1 (scenes random classifier)" >&2; exit 2 ;;
    esac
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(scenes random classifier)
for s in "${stages[@]}"; do stage "$s"; done
