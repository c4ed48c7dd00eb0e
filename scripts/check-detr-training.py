#!/usr/bin/env python3
"""The outside check of `vit train --task detection`: the same DETR, from the same initial weights, trained on the same
batches by transformers' DetrForObjectDetection (pip install torch transformers timm scipy matplotlib), step by step.

1. Makes the initial model with transformers (a timm ResNet-18 backbone, random; dropout 0 so that both runs are
   deterministic) and saves it as a Hugging Face folder.
2. Runs `vit train --task detection --init THAT-FOLDER --log-steps --max-steps N` on a `vit detection-data` set: its
   steps.jsonl names each step's images and its losses.
3. Replays those steps with PyTorch: the same images (PNG / 255, ImageNet's normalisation), boxes and classes from
   instances_train.json, AdamW (1e-4, the backbone 1e-5, weight decay 1e-4), the gradient norm clipped at 0.1.
4. Compares the two loss curves: the first step must agree within 1e-4, and the table gives the difference over the
   run; the figure shows both.

    python3 scripts/check-detr-training.py --vit .build/release/vit --steps 300 -o runs/detr-check \
        --figure docs/detection/check-transformers.png
"""
import argparse, json, os, subprocess, sys

import numpy as np
import torch
from PIL import Image
from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor

parser = argparse.ArgumentParser()
parser.add_argument("--vit", default=".build/release/vit")
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--images", type=int, default=256, help="training scenes")
parser.add_argument("--image-size", type=int, default=128)
parser.add_argument("-o", "--output", default="runs/detr-check")
parser.add_argument("--figure", help="PNG of both loss curves")
args = parser.parse_args()
torch.set_num_threads(os.cpu_count() or 1)
out = args.output
scenes, init, run = (os.path.join(out, n) for n in ("scenes", "init", "swiftvit"))


def sh(*command):
    print("$", " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True)


if not os.path.exists(os.path.join(scenes, "instances_train.json")):
    sh(args.vit, "detection-data", "-o", scenes, "--train", str(args.images), "--val", "16", "--image-size", str(args.image_size))
coco = json.load(open(os.path.join(scenes, "instances_train.json")))
categories = sorted(c["id"] for c in coco["categories"])
names = {c["id"]: c["name"] for c in coco["categories"]}

# The experiment's small DETR (README, "Detection (DETR)"), random, as transformers initialises it.
torch.manual_seed(0)
config = DetrConfig(
    use_timm_backbone=True, backbone="resnet18", use_pretrained_backbone=False, num_channels=3, d_model=128,
    encoder_layers=3, decoder_layers=3, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=512,
    decoder_ffn_dim=512, num_queries=20, auxiliary_loss=True, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
    id2label={i: names[c] for i, c in enumerate(categories)}, label2id={names[c]: i for i, c in enumerate(categories)})
DetrForObjectDetection(config).save_pretrained(init)
DetrImageProcessor(size={"shortest_edge": args.image_size, "longest_edge": args.image_size}).save_pretrained(init)

# SwiftViT's run, which decides the batches.
epochs = 3 * (args.steps * args.batch_size // args.images + 1)  # the rate's drop (at 2/3) comes after the last step
if not os.path.exists(os.path.join(run, "steps.jsonl")):
    sh(args.vit, "train", "--task", "detection", "--data", scenes, "--init", init, "-o", run, "--epochs", str(epochs),
       "--batch-size", str(args.batch_size), "--max-steps", str(args.steps), "--dropout", "0", "--log-steps")
steps = [json.loads(line) for line in open(os.path.join(run, "steps.jsonl"))]

# The same steps with transformers.
model = DetrForObjectDetection.from_pretrained(init)
model.train()
backbone = [p for n, p in model.named_parameters() if "backbone" in n and p.requires_grad]
rest = [p for n, p in model.named_parameters() if "backbone" not in n and p.requires_grad]
optimizer = torch.optim.AdamW([{"params": rest}, {"params": backbone, "scale": 0.1}], lr=1e-4, weight_decay=1e-4)
mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
objects = {}
for a in coco["annotations"]:
    objects.setdefault(a["image_id"], []).append(a)


def example(i):
    entry = coco["images"][i]
    pixels = np.asarray(Image.open(os.path.join(scenes, entry["file_name"])).convert("RGB"), np.float32) / 255
    h, w = pixels.shape[:2]
    found = objects.get(entry["id"], [])
    boxes = [[(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h] for x, y, bw, bh in (a["bbox"] for a in found)]
    target = {"class_labels": torch.tensor([categories.index(a["category_id"]) for a in found], dtype=torch.long),
              "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)}
    return torch.from_numpy(((pixels - mean) / std).transpose(2, 0, 1).copy()), target


rows = []
for step in steps:
    batch = [example(i) for i in step["images"]]
    pixels = torch.stack([b[0] for b in batch])
    for group in optimizer.param_groups:
        group["lr"] = step["lr"] * group.get("scale", 1.0)
    output = model(pixel_values=pixels, pixel_mask=torch.ones(pixels.shape[0], *pixels.shape[2:], dtype=torch.long),
                   labels=[b[1] for b in batch])
    output.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    optimizer.step()
    optimizer.zero_grad()
    d = output.loss_dict
    rows.append((step["step"], step["loss"], output.loss.item(), step["ce"], d["loss_ce"].item(), step["l1"], d["loss_bbox"].item(),
                 step["giou"], d["loss_giou"].item()))
    if len(rows) % 25 == 0 or len(rows) == 1:
        print(f"step {step['step']}: SwiftViT {step['loss']:.6f}  transformers {output.loss.item():.6f}", file=sys.stderr)

r = np.array(rows)
difference = np.abs(r[:, 1] - r[:, 2])
first = difference[0]
window = max(len(r) // 10, 1)
smooth = lambda v: np.convolve(v, np.ones(window) / window, mode="valid")
print(json.dumps({
    "steps": len(r), "first_step": {"swiftvit": r[0, 1], "transformers": r[0, 2], "difference": first,
                                     "terms": {"ce": abs(r[0, 3] - r[0, 4]), "l1": abs(r[0, 5] - r[0, 6]), "giou": abs(r[0, 7] - r[0, 8])}},
    "max_difference_first_10": float(difference[:10].max()), "max_difference": float(difference.max()),
    "mean_relative_difference": float((difference / np.abs(r[:, 2])).mean()),
    "last_10_mean": {"swiftvit": float(r[-10:, 1].mean()), "transformers": float(r[-10:, 2].mean())},
    "max_smoothed_relative_difference": float(np.abs(smooth(r[:, 1]) - smooth(r[:, 2])).max() / np.abs(smooth(r[:, 2])).min()),
}, indent=1))
if args.figure:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(r[:, 0], r[:, 2], label="transformers DetrForObjectDetection", linewidth=2.5, color="#f0a040")
    top.plot(r[:, 0], r[:, 1], label="SwiftViT vit train --task detection", linewidth=1, color="#2050c0")
    top.set_ylabel("training loss (all decoder layers)")
    top.set_title(f"The same DETR, weights and batches: {len(r)} steps of batch {args.batch_size}")
    top.legend()
    bottom.semilogy(r[:, 0], np.maximum(difference, 1e-9), color="black", linewidth=1)
    bottom.set_xlabel("step")
    bottom.set_ylabel("|difference|")
    fig.tight_layout()
    fig.savefig(args.figure, dpi=100)
assert first <= 1e-4, f"the first step's losses differ by {first}"
