#!/usr/bin/env bash
# vit serve against the Python server a timm user would write (../shared/bench/serve: FastAPI + uvicorn + timm, on
# PyTorch and on OpenVINO), in one run, one server at a time, on the loopback address: the same weights, the same
# photo, the same load generator (hey, keep-alive), 2 threads each. Each row: a model, a server, a number of
# concurrent clients, in REPEATS rounds (report.py takes each cell's median); requests/s and p50/p90/p99 latency over
# SECONDS_EACH seconds after a warm-up; the server's peak RSS.
# Then the leak check: vit serve's RSS after 1,000 requests and after 100,000 more.
#
#   VIT=.build/release/vit VENV=/path/to/venv bash docs/serving/measure.sh > docs/serving/measurements.jsonl
# The venv: pip install torch timm openvino fastapi uvicorn python-multipart safetensors pillow.
# Nothing else may run meanwhile (two cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
VIT=${VIT:-.build/release/vit}
VENV=${VENV:?the Python venv with torch, timm, openvino, fastapi, uvicorn}
SECONDS_EACH=${SECONDS_EACH:-10}
PHOTO=${PHOTO:-../shared/data/photos/squirrel_cls.jpg}
CLIENTS=${CLIENTS:-"1 8 32"}
LEAK_REQUESTS=${LEAK_REQUESTS:-100000}
REPEATS=${REPEATS:-3}
export ANCHOR_THREADS=2  # the Python servers' threads (torch and OpenVINO), as vit's two cores
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

"$VIT" convert builtin:cifar10-vit -o "$work/builtin" >&2
"$VIT" create --arch vit_small_patch16_224 -o "$work/vit-s16" >&2
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | xargs)
bf16=$(grep -c avx512_bf16 /proc/cpuinfo || true)

# Starts a server (the rest of the line) on port $1; waits until /v2/health/ready answers.
start() {
    local port=$1; shift
    "$@" > "$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 600); do
        curl -sf "http://127.0.0.1:$port/v2/health/ready" > /dev/null && return 0
        kill -0 $server 2>/dev/null || { cat "$work/server.log" >&2; return 1; }
        sleep 0.2
    done
    echo "server on $port did not start" >&2; return 1
}

# One load: hey's summary -> a JSON line.
load() {  # model server clients url
    hey -z "${SECONDS_EACH}s" -c "$3" -m POST -T image/jpeg -D "$PHOTO" "$4" > "$work/hey.txt"
    python3 - "$1" "$2" "$3" "$work/hey.txt" "$cpu" "$bf16" <<'PY'
import json, re, sys
model, server, clients, path, cpu, bf16 = sys.argv[1:]
text = open(path).read()
def seconds(p):
    m = re.search(rf"\s{p}% in ([0-9.]+) secs", text)
    return float(m.group(1)) if m else None
codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", text))
print(json.dumps({"model": model, "server": server, "clients": int(clients),
                  "requests_per_second": float(re.search(r"Requests/sec:\s+([0-9.]+)", text).group(1)),
                  **{f"p{p}_ms": None if seconds(p) is None else seconds(p) * 1000 for p in (50, 90, 99)},
                  "status": {k: int(v) for k, v in codes.items()}, "cpu": cpu, "avx512_bf16": int(bf16) > 0}))
PY
}

peak() { grep VmHWM /proc/$1/status | awk '{print $2 * 1024}'; }
resident() { grep VmRSS /proc/$1/status | awk '{print $2 * 1024}'; }

# The command line of each server, for a model folder and a port.
command_for() {  # name folder port
    case "$1" in
        "vit serve, batching") echo "$VIT serve --port $3 --precision fp32 --max-batch-size 8 --max-queue-delay 500 --model m=$2" ;;
        "vit serve, no batching") echo "$VIT serve --port $3 --precision fp32 --max-batch-size 1 --model m=$2" ;;
        "vit serve, batching, bf16") echo "$VIT serve --port $3 --precision bf16 --max-batch-size 8 --max-queue-delay 500 --model m=$2" ;;
        "FastAPI + PyTorch") echo "$VENV/bin/python docs/serving/timm_folder.py $2 --backend torch --port $3" ;;
        "FastAPI + OpenVINO") echo "$VENV/bin/python docs/serving/timm_folder.py $2 --backend openvino --port $3" ;;
    esac
}
names=("vit serve, batching" "vit serve, no batching")
[ "$bf16" -gt 0 ] && names+=("vit serve, batching, bf16")  # bf16 only where the CPU has it
names+=("FastAPI + PyTorch" "FastAPI + OpenVINO")

port=8190
for repeat in $(seq "$REPEATS"); do  # whole rounds, so that a slow spell of the shared host hits every server alike
for model in builtin vit-s16; do
    for name in "${names[@]}"; do
        start $port $(command_for "$name" "$work/$model" $port)
        url="http://127.0.0.1:$port/v1/models/m/classify"
        hey -n 64 -c 4 -m POST -T image/jpeg -D "$PHOTO" "$url" > /dev/null  # warm-up
        for clients in $CLIENTS; do
            line=$(load "$model" "$name" "$clients" "$url")
            echo "$line" | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r['peak_rss_bytes']=$(peak $server); r['round']=$repeat; print(json.dumps(r))"
        done
        kill -TERM $server; wait $server 2>/dev/null || true
        port=$((port + 1))
    done
done
done

# The leak check: the built-in model, batching on, 8 clients.
start $port "$VIT" serve --port $port --precision fp32 --max-batch-size 8 --max-queue-delay 500 --model "m=$work/builtin"
url="http://127.0.0.1:$port/v1/models/m/classify"
hey -n 1000 -c 8 -m POST -T image/jpeg -D "$PHOTO" "$url" > /dev/null
after1k=$(resident $server)
hey -n "$LEAK_REQUESTS" -c 8 -m POST -T image/jpeg -D "$PHOTO" "$url" > "$work/hey.txt"
after=$(resident $server)
ok=$(grep -Eo "\[200\]\s+[0-9]+" "$work/hey.txt" | awk '{print $2}')
all=$(grep -Eo "\[[0-9]+\]\s+[0-9]+ responses" "$work/hey.txt" | awk '{s += $2} END {print s}')
echo "{\"leak_check\": true, \"requests\": $((1000 + all)), \"answered_200\": $((1000 + ok)), \"rss_after_1000_bytes\": $after1k, \"rss_after_all_bytes\": $after, \"peak_rss_bytes\": $(peak $server), \"cpu\": \"$cpu\"}"
kill -TERM $server; wait $server 2>/dev/null || true
