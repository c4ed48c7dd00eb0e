#!/usr/bin/env python3
"""Prints a Markdown table row per run folder from its metrics.jsonl: the epochs done, the last epoch's test top-1
(and, for a distilled model, each head's), the best epoch's, the compute precision of each stretch of epochs (a run
resumed on another host may change it), the total training time and the median images/s.
The README's experiment tables are made with it:

    python3 scripts/experiment-table.py runs/ft-scratch runs/ft-mae runs/probe-mae
"""
import json
import statistics
import sys


def precisions(epochs):
    """'bf16', or 'fp32 (1-12), bf16 (13-30)' when it changed; 'not recorded' for runs from before the field."""
    stretches = []
    for e in epochs:
        name = e.get("precision", "not recorded")
        if stretches and stretches[-1][0] == name:
            stretches[-1][2] = e["epoch"]
        else:
            stretches.append([name, e["epoch"], e["epoch"]])
    if len(stretches) == 1:
        return stretches[0][0]
    return ", ".join(f"{name} ({first}-{last})" if first != last else f"{name} ({first})" for name, first, last in stretches)


def row(folder):
    with open(f"{folder}/metrics.jsonl") as f:
        epochs = [json.loads(line) for line in f if line.strip()]
    last = epochs[-1]
    hours = sum(e["seconds"] for e in epochs) / 3600
    rate = statistics.median(e["images_per_second"] for e in epochs)
    cells = [folder, str(last["epoch"])]
    if "val_top1" in last:
        best = max(epochs, key=lambda e: e["val_top1"])
        cells += [f"{100 * last['val_top1']:.2f}%", f"{100 * best['val_top1']:.2f}% (epoch {best['epoch']})"]
        heads = [k for k in ("val_class_head_top1", "val_distillation_head_top1") if k in last]
        cells.append(" / ".join(f"{100 * last[k]:.2f}%" for k in heads) if heads else "")
    else:  # pre-training: the reconstruction loss
        cells += [f"loss {last['loss']:.4f}", "", ""]
    cells += [precisions(epochs), f"{hours:.2f} h", f"{rate:.0f}"]
    return "| " + " | ".join(cells) + " |"


print("| run | epochs | test top-1, last | best | class / distillation head | precision | time | images/s (median) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for folder in sys.argv[1:]:
    print(row(folder.rstrip("/")))
