#!/usr/bin/env python3
"""The table of docs/speed/attention-length.sh's lines: µs per token at each length, and its ratio to 224 px's."""
import json
import sys
from collections import defaultdict

rows = defaultdict(dict)
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[(r["arch"], r["precision"])][r["image_size"]] = (r["tokens"], r["ms_per_batch"] * 1e3 / r["tokens"])
print("| model, precision | 224 px (197 tokens), µs/token | 384 px (577) | ratio | 448 px (785) | ratio |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for (arch, precision), sizes in rows.items():
    base = sizes[224][1]
    cells = [f"{base:.1f}"]
    for size in (384, 448):
        cells += [f"{sizes[size][1]:.1f}", f"{sizes[size][1] / base:.2f}x"]
    print(f"| {arch}, {precision} | " + " | ".join(cells) + " |")
