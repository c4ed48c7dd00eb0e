#!/usr/bin/env python3
"""docs/data/memory.png from docs/data/measurements.jsonl: peak memory of vit train against the number of training
images, streamed and in memory, beside what the decoded images alone would take.   python3 docs/data/figure.py"""
import json
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = [json.loads(line) for line in open("docs/data/measurements.jsonl")]
machine = next(r for r in rows if r["kind"] == "machine")
peaks = [r for r in rows if r["kind"] == "peak-rss"]
fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
for reading, style in [("stream", "o-"), ("memory", "s-")]:
    points = sorted((r["training_images"], r["max_rss_kb"] / 1024 / 1024) for r in peaks if r["reading"] == reading)
    ax.plot([p[0] for p in points], [p[1] for p in points], style, label=f"--data-reading {reading}")
sizes = [5000, 50000, 500000]
ax.plot(sizes, [n * 224 * 224 * 3 / 2**30 for n in sizes], ":", color="grey", label="decoded 224 px images alone")
ax.axhline(24, color="red", linewidth=0.8)
ax.text(5200, 26, "this machine's memory (24 GiB)", color="red", fontsize=8)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("training images (5,000 per shard)")
ax.set_ylabel("peak resident memory (GiB)")
ax.set_title(f"vit train, ViT-Ti/16 at 224 px, batch 32, {peaks[0]['steps']} steps ({machine['cpu']}, {machine['cores']} cores)", fontsize=9)
ax.legend(fontsize=8, loc="upper left")
ax.grid(True, which="both", alpha=0.3)
fig.tight_layout()
fig.savefig("docs/data/memory.png")
