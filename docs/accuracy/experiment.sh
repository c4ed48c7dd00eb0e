#!/bin/bash
# Toward 90% for the built-in model (README, "The next built-in model"): the built-in model's ViT (vit_cifar_patch4_32,
# 2.7M parameters) pre-trained longer as a masked autoencoder, fine-tuned longer with DeiT's hard distillation from the
# ResNet-18 teacher of the distillation experiment, then at 48 px. Validation is the 10,000 test images, which no
# stage trains on.
#
# Each stage continues its run (--resume) when the run has a checkpoint and is skipped when metrics.jsonl holds its
# last epoch, so the script can be started again after any stop. Stages run one after another (never two trainings at
# once on this 2-core machine).
#
#   VIT=runs/bin/vit-COMMIT bash docs/accuracy/experiment.sh [STAGE ...]    # default: every stage, in this order
#   python3 scripts/experiment-table.py docs/accuracy/*                      # the README table
set -euo pipefail
cd "$(dirname "$0")/../.."
VIT=${VIT:-.build/release/vit}
DATA=${DATA:-../shared/data/cifar10-jpg.tar.gz}
mkdir -p runs
COMMITTED=docs/accuracy
source scripts/experiment-stage.sh  # run NAME EPOCHS SUBCOMMAND OPTIONS..., restore NAME; PRECISION (this host's)

# Stage 1: the pre-training experiment's MAE recipe (docs/pretraining/experiment.sh), 400 epochs instead of 100 (the
# warm-up is then MAE's cap, 40 epochs).
PRETRAIN="--data $DATA --epochs 400 --blr 1e-3 --norm-pix-loss --decoder-depth 1 --decoder-width 128 --decoder-heads 4 --precision $PRECISION"
# The fine-tuning recipe of the MAE fine-tune that is the built-in model now (ft-mae: 84.90%), at more epochs.
FINETUNE="--data $DATA --pooling avg --layer-decay 0.75 --randaugment 2,9 --random-erasing 0.25 --drop-path 0.1 --precision $PRECISION"
# DeiT's hard distillation from the ResNet-18 (width 32, 88.83%) of the distillation experiment.
DISTILL="--distilled --teacher runs/resnet18-w32 --distillation hard"

teacher() { COMMITTED=docs/distillation restore resnet18-w32; }

stage() {
    case $1 in
    mae400) run mae400-cifar 400 pretrain --method mae $PRETRAIN ;;
    # The ablation: the longer pre-training alone, fine-tuned as the built-in model was (30 epochs, no teacher).
    ft30) restore mae400-cifar; run ft30-mae400 30 train --init runs/mae400-cifar --epochs 30 --warmup 3 $FINETUNE ;;
    # 100 epochs with the teacher; a fine-tune that adds the distillation token to the MAE encoder.
    distill) restore mae400-cifar; teacher; run distill-mae400 100 train --init runs/mae400-cifar --epochs 100 --warmup 5 $FINETUNE $DISTILL ;;
    # 15 epochs at 48 px from the distilled model (its positions resampled; the teacher sees the images at its 32 px).
    hires) restore distill-mae400; teacher; run hires-48 15 train --init runs/distill-mae400 --image-size 48 --epochs 15 --warmup 1 --lr 2e-4 $FINETUNE $DISTILL ;;
    *) echo "unknown stage $1 (mae400 ft30 distill hires)" >&2; exit 2 ;;
    esac
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(mae400 ft30 distill hires)
for s in "${stages[@]}"; do stage "$s"; done
