#!/usr/bin/env python3
"""Reads `vit shard` output back with Python's webdataset (pip install webdataset) and checks every sample against the
image folder it came from: the same image bytes, the label of its class folder, sorted order, and sizes.json.

    python3 scripts/check-webdataset.py IMAGE-FOLDER SHARD-FOLDER
"""
import glob, json, os, sys

import webdataset as wds

source, shards = sys.argv[1], sys.argv[2]
parts = [p for p in ("train", "test", "val", "validation") if os.path.isdir(os.path.join(source, p))]
classes = sorted(d for d in os.listdir(os.path.join(source, parts[0]) if parts else source) if not d.startswith("."))
sizes = json.load(open(os.path.join(shards, "sizes.json")))
checked = 0
for part in parts or ["shard"]:
    root = os.path.join(source, part) if parts else source
    expected = []
    for label, name in enumerate(classes):
        for image in sorted(os.listdir(os.path.join(root, name))):
            if image.lower().rsplit(".", 1)[-1] in ("jpg", "jpeg", "png", "webp"):
                expected.append((label, open(os.path.join(root, name, image), "rb").read()))
    urls = sorted(glob.glob(os.path.join(shards, f"{part}-*.tar")))
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == len(expected) == sum(sizes[os.path.basename(u)] for u in urls), (part, len(samples), len(expected))
    for i, (sample, (label, data)) in enumerate(zip(samples, expected)):
        assert sample["__key__"] == "%08d" % i, sample["__key__"]
        assert int(sample["cls"]) == label, (i, sample["cls"], label)
        image = sample.get("jpg") or sample.get("png") or sample.get("webp")
        assert image == data, f"{part} sample {i}: image bytes differ"
        checked += 1
print(f"webdataset read {checked} samples in {len(sizes)} shards, all equal to the folder's images and labels")
