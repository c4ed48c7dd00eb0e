#!/usr/bin/env python3
"""Issue 51's scaling model, on paper, from the measurements (docs/parallel/measurements.jsonl).

A ring allreduce of S gradient bytes over N machines sends 2(N-1)/N x S bytes through each machine's link, in
2(N-1) steps that each pay the link's latency:  t_allreduce = 2(N-1)/N x S / bandwidth + 2(N-1) x latency.
A step of data-parallel training costs the machine's compute t_compute (forward, backward, update on its share of the
global batch: fixed as N grows, weak scaling) plus the part of the allreduce the overlap with the backward pass does
not hide:  t_step = t_compute + (1 - hidden) x t_allreduce,  efficiency = t_compute / t_step.

t_compute comes from the 2-rank run on one host (each rank one core, its allreduce through shared memory nearly
free), `hidden` from the 2-"host" run at 10 Gbit/s; the 1 Gbit/s run is then predicted and compared with what was
measured. Machines of many are assumed to be this one's kind of core (one per rank), latency 20 us a hop.
    python3 docs/parallel/model.py [docs/parallel/measurements.jsonl]
"""
import json
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "docs/parallel/measurements.jsonl"
rows = [json.loads(line) for line in open(path) if line.strip()]
machine = next(r for r in rows if r["kind"] == "machine")
runs = {(r["model"], r["setup"]): r for r in rows if r["kind"] == "throughput"}
LATENCY = 20e-6
names = {"builtin": "built-in (CIFAR, 32 px)", "vit-s16": "ViT-S/16 (224 px)"}


def allreduce(n, megabytes, gbit):
    return 2 * (n - 1) / n * megabytes * 1e6 * 8 / (gbit * 1e9) + 2 * (n - 1) * LATENCY


print(f"CPU: {machine['cpu']}, {machine['cores']} cores, {machine['precision']}\n")
print("| model | setup | images/s | vs 1 process | allreduce per step | waited for | hidden |")
print("|---|---|---|---|---|---|---|")
for model in names:
    alone = runs[(model, "alone")]["images_per_second"]
    for setup in ["alone", "one-host", "two-hosts-10gbit", "two-hosts-1gbit"]:
        r = runs.get((model, setup))
        if not r or r["images_per_second"] is None:
            continue
        a, w = r["allreduce_seconds_per_update"], r["allreduce_waited_seconds_per_update"]
        ms = lambda x: "-" if x is None else f"{x * 1000:.0f} ms"
        hidden = "-" if not a else f"{max(0, 1 - w / a) * 100:.0f}%"
        print(f"| {names[model]} | {setup} | {r['images_per_second']:.1f} | {r['images_per_second'] / alone:.2f}x | {ms(a)} | {ms(w)} | {hidden} |")

print("\nThe model against the 1 Gbit/s point, and its predictions (efficiency = images/s per machine against one machine's"
      " compute alone):\n")
print("| model | gradient MB | t_compute | hidden (10 Gbit/s run) | predicted 2 hosts, 1 Gbit/s | measured |"
      " N=8, 10 Gbit/s | N=32, 10 Gbit/s | N=128, 10 Gbit/s | N=8, 100 Gbit/s | N=32, 100 Gbit/s | N=128, 100 Gbit/s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for model in names:
    one_host, ten, one = (runs.get((model, s)) for s in ["one-host", "two-hosts-10gbit", "two-hosts-1gbit"])
    if not (one_host and ten and one) or None in (one_host["images_per_second"], ten["images_per_second"], one["images_per_second"]):
        continue
    batch = one_host["global_batch"]
    step = batch / one_host["images_per_second"]
    compute = step - one_host["allreduce_waited_seconds_per_update"]
    mb = ten["gradient_megabytes"]
    hidden = max(0.0, 1 - ten["allreduce_waited_seconds_per_update"] / ten["allreduce_seconds_per_update"])
    predicted = batch / (compute + (1 - hidden) * allreduce(2, mb, 1))
    cells = []
    for gbit in [10, 100]:
        for n in [8, 32, 128]:
            cells.append(f"{compute / (compute + (1 - hidden) * allreduce(n, mb, gbit)) * 100:.0f}%")
    print(f"| {names[model]} | {mb:.1f} | {compute * 1000:.0f} ms | {hidden * 100:.0f}% | {predicted:.1f} img/s |"
          f" {one['images_per_second']:.1f} img/s | " + " | ".join(cells) + " |")
