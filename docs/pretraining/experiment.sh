#!/bin/bash
# The CIFAR-10 pre-training experiment (README, "Pre-training"): MAE and HPM pre-trained 100 epochs on the 50,000
# training images without labels, each fine-tuned 30 epochs and linearly probed, against the same ViT trained 30
# epochs from scratch with the same recipe. Validation is the 10,000 test images, which no stage trains on.
#
# Each stage continues its run (--resume) when the run has a checkpoint and is skipped when metrics.jsonl holds its
# last epoch, so the script can be started again after any stop: it picks up where the last one left off. Stages
# run one after another (never two trainings at once on this 2-core machine).
#
#   VIT=runs/bin/vit bash docs/pretraining/experiment.sh [STAGE ...]     # default: every stage, in this order
#   python3 scripts/experiment-table.py runs/ft-scratch runs/ft-mae runs/probe-mae runs/ft-hpm runs/probe-hpm    # the README table
set -euo pipefail
cd "$(dirname "$0")/../.."
VIT=${VIT:-.build/release/vit}
DATA=${DATA:-../shared/data/cifar10-jpg.tar.gz}
mkdir -p runs
# A run that later stages start from (its model) or that the README table reads is committed as docs/pretraining/NAME
# when it ends, or at a session's end with its checkpoint; runs restore a missing runs/NAME from there.
COMMITTED=docs/pretraining
source scripts/experiment-stage.sh  # run NAME EPOCHS SUBCOMMAND OPTIONS..., restore NAME; PRECISION (this host's)

# The pre-training recipe: MAE's defaults with a base rate of 1e-3, normalised pixel targets, a one-block decoder
# 128 wide (the encoder is the built-in model's architecture, vit_cifar_patch4_32), every stage at the host's
# PRECISION.
PRETRAIN="--data $DATA --epochs 100 --blr 1e-3 --norm-pix-loss --decoder-depth 1 --decoder-width 128 --decoder-heads 4 --precision $PRECISION"
# The supervised recipe, shared by the run from scratch and the fine-tunes: the first built-in model's augmentation and
# regularisation, average pooling with fc_norm (MAE's fine-tuning), 30 epochs. The fine-tunes add MAE's layer-wise
# rate decay, which a model from scratch has no use for.
SUPERVISED="--data $DATA --epochs 30 --warmup 3 --pooling avg --randaugment 2,9 --random-erasing 0.25 --drop-path 0.1 --precision $PRECISION"
PROBE="--data $DATA --epochs 10 --warmup 1 --pooling avg --linear-probe --weight-decay 0 --precision $PRECISION"

stage() {
    case $1 in
    mae) restore mae-cifar; run mae-cifar 100 pretrain --method mae $PRETRAIN ;;
    scratch) run ft-scratch 30 train $SUPERVISED ;;
    mae-finetune) restore mae-cifar; run ft-mae 30 train --init runs/mae-cifar --layer-decay 0.75 $SUPERVISED ;;
    mae-probe) restore mae-cifar; run probe-mae 10 train --init runs/mae-cifar $PROBE ;;
    hpm) restore hpm-cifar; run hpm-cifar 100 pretrain --method hpm $PRETRAIN ;;
    hpm-finetune) restore hpm-cifar; run ft-hpm 30 train --init runs/hpm-cifar --layer-decay 0.75 $SUPERVISED ;;
    hpm-probe) restore hpm-cifar; run probe-hpm 10 train --init runs/hpm-cifar $PROBE ;;
    *) echo "unknown stage $1 (mae scratch mae-finetune mae-probe hpm hpm-finetune hpm-probe)" >&2; exit 2 ;;
    esac
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(mae scratch mae-finetune mae-probe hpm hpm-finetune hpm-probe)
for s in "${stages[@]}"; do stage "$s"; done
