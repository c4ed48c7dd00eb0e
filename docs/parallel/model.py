#!/usr/bin/env python3
"""Issue 51's scaling model, on paper, checked against the measurements (docs/parallel/measurements.jsonl).

On paper, a ring allreduce of S gradient bytes over N machines sends 2(N-1)/N x S bytes through each machine's link
in 2(N-1) steps, each paying the link's latency (20 us assumed):
    t_allreduce = 2(N-1)/N x S x 8 / bandwidth + 2(N-1) x latency.
A step costs the machine's compute (forward, backward and update on its share: fixed as N grows, weak scaling) plus
the part of the allreduce that the overlap with the backward pass cannot hide:
    t_step = t_compute + max(0, t_allreduce - overlap),   efficiency = t_compute / t_step.
t_compute comes from the 2-rank run on one host (its allreduce through shared memory), the overlap (the backward
time after the first bucket is ready) from the 2-"host" run at 1 Gbit/s, where the allreduce outlasts the backward.

The measured allreduce is slower than the paper's, so a calibrated variant adds what the two "hosts" show: TCP reaches
a share eta of the link's rate, and each byte costs c seconds of the rank's one core (the copies through the kernel),
    t_allreduce = 2(N-1)/N x S x (8 / (eta x bandwidth) + c) + 2(N-1) x latency,
with eta and c fitted to the built-in model's two points and checked on ViT-S/16's two.
    python3 docs/parallel/model.py [docs/parallel/measurements.jsonl]
"""
import json
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "docs/parallel/measurements.jsonl"
rows = [json.loads(line) for line in open(path) if line.strip()]
machine = next(r for r in rows if r["kind"] == "machine")
runs = {(r["model"], r["setup"]): r for r in rows if r["kind"] == "throughput"}
LATENCY = 20e-6
names = {"builtin": "built-in (CIFAR-10, 32 px)", "vit-s16": "ViT-S/16 (224 px)"}
GBIT = {"two-hosts-10gbit": 10, "two-hosts-1gbit": 1}


def allreduce(n, megabytes, gbit, eta=1.0, c=0.0):
    return 2 * (n - 1) / n * megabytes * 1e6 * (8 / (eta * gbit * 1e9) + c) + 2 * (n - 1) * LATENCY


def ms(x):
    return "-" if x is None else f"{x * 1000:.0f} ms"


print(f"CPU: {machine['cpu']}, {machine['cores']} cores, {machine['precision']}, Open MPI {machine['open_mpi']}\n")
print("| model | setup | images/s | vs 1 process | allreduce per step | waited for | hidden by the overlap |")
print("|---|---|---|---|---|---|---|")
for model in names:
    alone = runs[(model, "alone")]["images_per_second"]
    for setup in ["alone", "one-host", "two-hosts-10gbit", "two-hosts-1gbit"]:
        r = runs[(model, setup)]
        a, w = r["allreduce_seconds_per_update"], r["allreduce_waited_seconds_per_update"]
        hidden = "-" if not a else f"{max(0, 1 - w / a) * 100:.0f}%"
        print(f"| {names[model]} | {setup} | {r['images_per_second']:.1f} | {r['images_per_second'] / alone:.2f}x | {ms(a)} | {ms(w)} | {hidden} |")

# eta and c from the built-in model's two points (N = 2: 2(N-1)/N = 1).
b1, b10 = runs[("builtin", "two-hosts-1gbit")], runs[("builtin", "two-hosts-10gbit")]
mb = b1["gradient_megabytes"]
t1, t10 = b1["allreduce_seconds_per_update"] - 2 * LATENCY, b10["allreduce_seconds_per_update"] - 2 * LATENCY
eta = mb * 1e6 * 8 * (1e-9 - 1e-10) / (t1 - t10)
c = t10 / (mb * 1e6) - 8 / (eta * 10e9)
print(f"\nCalibration on the built-in model: TCP reaches eta = {eta:.2f} of the link's rate, and a byte costs c = {c * 1e9:.2f} ns"
      " of the rank's core.\n")
print("| model | link | allreduce: paper | calibrated | measured | images/s: paper | calibrated | measured |")
print("|---|---|---|---|---|---|---|---|")
model_numbers = {}
for model in names:
    one_host, one = runs[(model, "one-host")], runs[(model, "two-hosts-1gbit")]
    batch = one_host["global_batch"]
    compute = batch / one_host["images_per_second"] - one_host["allreduce_waited_seconds_per_update"]
    overlap = one["allreduce_seconds_per_update"] - one["allreduce_waited_seconds_per_update"]
    megabytes = one["gradient_megabytes"]
    model_numbers[model] = (compute, overlap, megabytes)
    for setup, gbit in GBIT.items():
        r = runs[(model, setup)]
        paper, calibrated = allreduce(2, megabytes, gbit), allreduce(2, megabytes, gbit, eta, c)
        rate = lambda t: batch / (compute + max(0, t - overlap))
        print(f"| {names[model]} | {gbit} Gbit/s | {ms(paper)} | {ms(calibrated)} | {ms(r['allreduce_seconds_per_update'])} |"
              f" {rate(paper):.1f} | {rate(calibrated):.1f} | {r['images_per_second']:.1f} |")

print("\nPredicted efficiency for N machines, each a rank like these (one core, the same share of the batch):\n")
header = [f"N={n}, {g} Gbit/s" for g in (10, 100) for n in (8, 32, 128)]
print("| model | t_compute | overlap | " + " | ".join(header) + " |")
print("|---|---|---|" + "---|" * len(header))
for model in names:
    compute, overlap, megabytes = model_numbers[model]
    for label, (e, cost) in [("paper", (1.0, 0.0)), ("calibrated", (eta, c))]:
        cells = []
        for g in (10, 100):
            for n in (8, 32, 128):
                t = allreduce(n, megabytes, g, e, cost)
                cells.append(f"{compute / (compute + max(0, t - overlap)) * 100:.0f}%")
        print(f"| {names[model]}, {label} | {ms(compute)} | {ms(overlap)} | " + " | ".join(cells) + " |")
