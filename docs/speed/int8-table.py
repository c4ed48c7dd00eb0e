#!/usr/bin/env python3
"""The README's table from docs/speed/int8-side-by-side.sh's output folder: ms per batch, SwiftViT (the mean of its
runs before and after the anchors) beside OpenVINO (its median), and their ratio (below 1: SwiftViT is faster).

    python3 docs/speed/int8-table.py OUT
"""
import json
import statistics
import sys
from collections import defaultdict

folder = sys.argv[1]
swift = defaultdict(list)
for line in open(f"{folder}/swift.jsonl"):
    r = json.loads(line)
    swift[(r["arch"], r["batch_size"], r["precision"])].append(r["ms_per_batch"])
anchors = {}
for line in open(f"{folder}/anchors.jsonl"):
    r = json.loads(line)
    if "backend" in r and "median_ms" in r:
        anchors[(r["model"], r["batch"], r["backend"])] = r["median_ms"]
pairs = [("fp32", "ov_f32"), ("bf16", "ov_bf16"), ("int8", "ov_int8")]
pairs = [p for p in pairs if any(k[2] == p[0] for k in swift)]
print("CPU:", open(f"{folder}/cpu.txt").read().strip())
print()
header = "| model, batch | " + " | ".join(f"SwiftViT {p} | OpenVINO {p} | ratio" for p, _ in pairs) + " |"
print(header)
print("| --- |" + " ---: |" * (3 * len(pairs)))
names = {"vit_tiny_patch16_224": "ViT-Ti/16", "vit_small_patch16_224": "ViT-S/16", "vit_base_patch16_224": "ViT-B/16"}
for model in names:
    for batch in (1, 16):
        cells = []
        for precision, backend in pairs:
            ours, theirs = swift.get((model, batch, precision)), anchors.get((model, batch, backend))
            if not ours or theirs is None:
                cells += ["-", "-", "-"]
                continue
            mean = statistics.mean(ours)
            cells += [f"{mean:.1f}", f"{theirs:.1f}", f"{mean / theirs:.2f}x"]
        if any(c != "-" for c in cells):
            print(f"| {names[model]}, {batch} | " + " | ".join(cells) + " |")
