#!/usr/bin/env python3
"""Prints a Markdown table row per run folder from its metrics.jsonl: the epochs done, the last epoch's test top-1
(and, for a distilled model, each head's), the best epoch's, the total training time and the median images/s.
The README's experiment tables are made with it:

    python3 scripts/experiment-table.py runs/ft-scratch runs/ft-mae runs/probe-mae
"""
import json
import statistics
import sys


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
    cells += [f"{hours:.2f} h", f"{rate:.0f}"]
    return "| " + " | ".join(cells) + " |"


print("| run | epochs | test top-1, last | best | class / distillation head | time | images/s (median) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for folder in sys.argv[1:]:
    print(row(folder.rstrip("/")))
