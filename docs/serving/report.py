"""docs/serving/measurements.jsonl (measure.sh) -> the README's Markdown table on stdout and throughput.png: images/s
and p99 latency against concurrent clients, per server, for each model. Each cell is the median over measure.sh's
rounds (the lowest and highest images/s beside it); the peak RSS is the largest.

    python report.py [measurements.jsonl] [throughput.png]    (matplotlib)
"""
import json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

here = os.path.dirname(os.path.abspath(__file__))
source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "measurements.jsonl")
figure = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "throughput.png")
rows = [json.loads(line) for line in open(source) if line.strip()]
measured = [r for r in rows if "server" in r]
rounds = len(set(r.get("round", 1) for r in measured))


def median(values):
    values = sorted(values)
    return values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2


runs = []  # one per model, server and clients: medians over the rounds
for key in dict.fromkeys((r["model"], r["server"], r["clients"]) for r in measured):
    mine = [r for r in measured if (r["model"], r["server"], r["clients"]) == key]
    run = dict(mine[0])
    for field in ("requests_per_second", "p50_ms", "p90_ms", "p99_ms"):
        run[field] = median([r[field] for r in mine])
    run["spread"] = (min(r["requests_per_second"] for r in mine), max(r["requests_per_second"] for r in mine))
    run["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in mine)
    run["status"] = {code: sum(r["status"].get(code, 0) for r in mine) for code in {c for r in mine for c in r["status"]}}
    runs.append(run)
leak = [r for r in rows if r.get("leak_check")]
models = list(dict.fromkeys(r["model"] for r in runs))
servers = list(dict.fromkeys(r["server"] for r in runs))
titles = {"builtin": "built-in CIFAR-10 ViT (32 px)", "vit-s16": "ViT-S/16 (224 px)"}

print(f"CPU: {runs[0]['cpu']}, 2 cores{' with AVX512-BF16' if runs[0]['avx512_bf16'] else ''}; medians of {rounds} rounds.\n")
print("| model | server | clients | images/s (lowest-highest) | p50 ms | p90 ms | p99 ms | peak RSS MiB |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in runs:
    failed = sum(v for k, v in r["status"].items() if k != "200")
    note = f" ({failed} not 200)" if failed else ""
    print(f"| {titles.get(r['model'], r['model'])} | {r['server']} | {r['clients']} | {r['requests_per_second']:.1f} ({r['spread'][0]:.0f}-{r['spread'][1]:.0f}){note} | "
          f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['peak_rss_bytes'] / 2**20:.0f} |")
for r in leak:
    print(f"\nLeak check: {r['requests']} requests ({r['answered_200']} answered 200); RSS after 1,000: "
          f"{r['rss_after_1000_bytes'] / 2**20:.1f} MiB, after all: {r['rss_after_all_bytes'] / 2**20:.1f} MiB.")

fig, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 8), squeeze=False)
for column, model in enumerate(models):
    for server in servers:
        mine = sorted((r for r in runs if r["model"] == model and r["server"] == server), key=lambda r: r["clients"])
        if not mine:
            continue
        clients = [r["clients"] for r in mine]
        style = "-" if server.startswith("vit") else "--"
        axes[0][column].plot(clients, [r["requests_per_second"] for r in mine], style, marker="o", label=server)
        axes[1][column].plot(clients, [r["p99_ms"] for r in mine], style, marker="o", label=server)
    axes[0][column].set_title(f"{titles.get(model, model)}: throughput")
    axes[0][column].set_ylabel("images per second")
    axes[1][column].set_title(f"{titles.get(model, model)}: p99 latency")
    axes[1][column].set_ylabel("p99 latency (ms, log scale)")
    axes[1][column].set_yscale("log")
    for row in (0, 1):
        axes[row][column].set_xlabel("concurrent clients (hey, keep-alive)")
        axes[row][column].set_xscale("log", base=2)
        axes[row][column].set_xticks([1, 8, 32], ["1", "8", "32"])
        axes[row][column].grid(alpha=0.3)
        axes[row][column].legend(fontsize=8)
fig.suptitle(f"vit serve against FastAPI + timm (PyTorch, OpenVINO), same weights and photo, 2 threads each\n{runs[0]['cpu']}")
fig.tight_layout()
fig.savefig(figure, dpi=100)
print(f"\n(figure: {os.path.relpath(figure, os.getcwd())})", file=sys.stderr)
