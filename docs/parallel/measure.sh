#!/usr/bin/env bash
# Issue 51's measurements: training images/s of one process, of 2 ranks on one host, and of 2 "hosts" (two network
# namespaces joined by a veth pair, shaped to 10 and 1 Gbit/s with tc's token bucket), for the built-in model on
# CIFAR-10 (32 px, global batch 128) and ViT-S/16 at 224 px (global batch 32), bf16 where the CPU has AVX512-BF16;
# with the time in allreduce and the share of it the overlap hid. Needs root (ip netns, tc) and Open MPI; nothing else
# may run meanwhile.
#   VIT=runs/bin/vit-COMMIT bash docs/parallel/measure.sh     # writes docs/parallel/measurements.jsonl
set -euo pipefail
cd "$(dirname "$0")/../.."
VIT=$(realpath "${VIT:-.build/release/vit}")
DATA=$(realpath "${DATA:-../shared/data/cifar10-jpg.tar.gz}")
OUT=docs/parallel/measurements.jsonl
work=$(mktemp -d /tmp/swiftvit-parallel.XXXXXX)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

cleanup() {
    ip netns del swiftvit-h1 2>/dev/null || true
    ip netns del swiftvit-h2 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | xargs)
bf16=$(grep -c avx512_bf16 /proc/cpuinfo || true)
precision=fp32; [ "$bf16" -gt 0 ] && precision=bf16
: > "$OUT"
echo "{\"kind\":\"machine\",\"cpu\":\"$cpu\",\"cores\":$(nproc),\"avx512_bf16\":$([ "$bf16" -gt 0 ] && echo true || echo false),\"precision\":\"$precision\",\"open_mpi\":\"$(mpirun --version | head -1 | awk '{print $NF}')\"}" >> "$OUT"

# Two "hosts": namespaces swiftvit-h1 (10.77.0.1) and swiftvit-h2 (10.77.0.2), each with its own hostname (so Open
# MPI sees two nodes) and one of the two cores. mpirun runs in h1 and starts h2's daemon through an "ssh" that is
# `ip netns exec` (plm_rsh_agent).
ip netns add swiftvit-h1
ip netns add swiftvit-h2
ip link add swiftvit-a type veth peer name swiftvit-b
ip link set swiftvit-a netns swiftvit-h1
ip link set swiftvit-b netns swiftvit-h2
ip -n swiftvit-h1 addr add 10.77.0.1/24 dev swiftvit-a
ip -n swiftvit-h2 addr add 10.77.0.2/24 dev swiftvit-b
for ns in swiftvit-h1 swiftvit-h2; do ip -n $ns link set lo up; done
ip -n swiftvit-h1 link set swiftvit-a up
ip -n swiftvit-h2 link set swiftvit-b up
cat > "$work/agent" <<'AGENT'
#!/bin/bash
# Open MPI's rsh agent: "agent HOST COMMAND..." runs COMMAND on the "host" 10.77.0.2 = namespace swiftvit-h2, core 1.
host=$1; shift
[ "$host" = 10.77.0.2 ] || { echo "agent: unknown host $host" >&2; exit 1; }
exec ip netns exec swiftvit-h2 unshare --uts bash -c "hostname swiftvit-h2; exec taskset -c 1 $*"
AGENT
chmod +x "$work/agent"
link() {  # RATE: the rate of both ends of the veth pair
    ip netns exec swiftvit-h1 tc qdisc replace dev swiftvit-a root tbf rate "$1" burst 1mbit latency 20ms
    ip netns exec swiftvit-h2 tc qdisc replace dev swiftvit-b root tbf rate "$1" burst 1mbit latency 20ms
}

# The data: CIFAR-10 as it is for the built-in model; 2,048 of its training images (and 100 test images) streamed
# at 224 px for ViT-S/16.
mkdir -p "$work/cifar" "$work/cifar224"
tar xzf "$DATA" -C "$work/cifar"
root=$(find "$work/cifar" -maxdepth 2 -type d -name train -printf '%h\n' -quit)
for part in train test; do
    n=205; [ "$part" = test ] && n=10
    for class in "$root/$part"/*/; do
        mkdir -p "$work/cifar224/$part/$(basename "$class")"
        find "$class" -type f | sort | sed -n "1,${n}p" | xargs cp -t "$work/cifar224/$part/$(basename "$class")"
    done
done
"$VIT" create --arch vit_small_patch16_224 -o "$work/vit-s16" > /dev/null

measure() {  # model setup batch steps: prints one JSON line
    local model=$1 setup=$2 batch=$3 steps=$4 per_rank=$3 log="$work/log"
    local args=(--precision "$precision" --max-steps "$steps" --epochs 1000 -o "$work/run")
    if [ "$model" = builtin ]; then
        args+=(--data "$DATA")
    else
        args+=(--data "$work/cifar224" --data-reading stream --image-size 224 --init "$work/vit-s16" --workers 1)
    fi
    [ "$setup" != alone ] && per_rank=$((batch / 2))
    args+=(--batch-size "$per_rank")
    rm -rf "$work/run"
    local mpi=(mpirun -np 2 -x OMP_NUM_THREADS=1 --mca btl_base_warn_component_unused 0)
    case $setup in
    alone) "$VIT" train "${args[@]}" > /dev/null 2> "$log" || true ;;
    one-host) "${mpi[@]}" --bind-to core "$VIT" train "${args[@]}" > /dev/null 2> "$log" || true ;;
    *)
        local rate=${setup#two-hosts-}
        link "$rate"
        ip netns exec swiftvit-h1 unshare --uts bash -c "hostname swiftvit-h1; exec taskset -c 0 ${mpi[*]} --bind-to none \
            --host 10.77.0.1:1,10.77.0.2:1 --mca plm_rsh_agent $work/agent --mca btl tcp,self \
            --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 $VIT train ${args[*]}" > /dev/null 2> "$log" || true
        ;;
    esac
    local speed allreduce waited megabytes
    megabytes=$(grep -o '[0-9.]* MB of gradients' "$log" | awk '{print $1}' || true)
    speed=$(grep -o 'speed: [0-9.]* img/s' "$log" | awk '{print $2}' || true)
    allreduce=$(grep -o 'allreduce [0-9.]* s per update' "$log" | awk '{print $2}' || true)
    waited=$(grep -o '[0-9.]* s of it waited' "$log" | awk '{print $1}' || true)
    echo "{\"kind\":\"throughput\",\"model\":\"$model\",\"setup\":\"$setup\",\"global_batch\":$batch,\"steps\":$steps,\"images_per_second\":${speed:-null},\"allreduce_seconds_per_update\":${allreduce:-null},\"allreduce_waited_seconds_per_update\":${waited:-null},\"gradient_megabytes\":${megabytes:-null}}"
    [ -n "$speed" ] || { echo "measure: $model $setup failed:" >&2; tail -5 "$log" >&2; }
}

for model in builtin vit-s16; do
    batch=128; steps=40
    [ "$model" = vit-s16 ] && { batch=32; steps=12; }
    for setup in alone one-host two-hosts-10gbit two-hosts-1gbit; do
        measure "$model" "$setup" "$batch" "$steps" | tee -a "$OUT"
    done
done
