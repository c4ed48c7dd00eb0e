#!/usr/bin/env python3
"""Does timm rebuild a folder SwiftViT wrote, and compute the same logits?

    python3 scripts/timm-parity.py FOLDER IMAGE [VIT]      # needs torch, timm, safetensors (pip)

timm builds the model from FOLDER's config.json alone (`local-dir:`), loads model.safetensors strictly (a missing or
unexpected tensor fails), preprocesses IMAGE with its own evaluation transform for the folder's data config, and runs
it in fp32. `VIT predict --model FOLDER --precision fp32 --json --logits` does the same in Swift. Prints both top-1
classes and the largest absolute difference between the two logit vectors; exits 1 when the top classes differ.
"""
import json
import os
import subprocess
import sys

import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    folder, image = sys.argv[1], sys.argv[2]
    vit = sys.argv[3] if len(sys.argv) == 4 else ".build/release/vit"
    for path in (os.path.join(folder, "config.json"), os.path.join(folder, "model.safetensors"), image, vit):
        if not os.path.isfile(path):
            sys.exit(f"timm-parity: {path}: no such file")

    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    with torch.no_grad():
        theirs = model(transform(Image.open(image).convert("RGB")).unsqueeze(0))[0]

    run = subprocess.run([vit, "predict", "--model", folder, "--precision", "fp32", "--json", "--logits", image],
                         capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"timm-parity: {vit} predict failed ({run.returncode}): {run.stderr.strip().splitlines()[-1:]}")
    out = run.stdout
    ours = torch.tensor(json.loads(out.splitlines()[0])["logits"])

    difference = (theirs - ours).abs().max().item()
    print(f"timm {timm.__version__}: {model.__class__.__name__}, global_pool={model.global_pool}, "
          f"top-1 {theirs.argmax().item()}; vit: top-1 {ours.argmax().item()}; "
          f"largest logit difference {difference:.2e}")
    sys.exit(0 if theirs.argmax() == ours.argmax() else 1)


if __name__ == "__main__":
    main()
