#!/bin/bash
# vit bench model in fp32, bf16 (where the CPU has AVX512-BF16) and int8, interleaved with OpenVINO running the same
# timm models quantised by NNCF (docs/speed/openvino_int8.py) and in fp32 and bf16 (../shared/bench), per model: SwiftViT before and after each anchor, as
# ../shared/bench/side_by_side.sh does. Nothing else may run meanwhile (2 cores).
#
#   VIT=.build/release/vit VENV=/tmp/anchors/venv bash docs/speed/int8-side-by-side.sh OUT   # OUT/swift.jsonl, OUT/anchors.jsonl
#   python3 docs/speed/int8-table.py OUT                                                     # the README table
set -euo pipefail
cd "$(dirname "$0")/../.."
VIT=${VIT:-.build/release/vit}
VENV=${VENV:-/tmp/anchors/venv}
OUT=${1:?output folder}
MODELS=${MODELS:-vit_tiny_patch16_224 vit_small_patch16_224 vit_base_patch16_224}
PRECISIONS="fp32 int8" OV_FLOAT=ov_f32
grep -q avx512_bf16 /proc/cpuinfo && PRECISIONS="fp32 bf16 int8" OV_FLOAT=ov_f32,ov_bf16
mkdir -p "$OUT"
grep -m1 'model name' /proc/cpuinfo > "$OUT/cpu.txt"
grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|avx512_vnni|avx_vnni|amx_int8)$' | tr '\n' ' ' >> "$OUT/cpu.txt"
swift_round() {
    for batch in 1 16; do
        for precision in $PRECISIONS; do
            "$VIT" bench model --arch "$1" --batch-size "$batch" --precision "$precision" --seconds 4 --json 2>/dev/null >> "$OUT/swift.jsonl"
        done
    done
}
for model in $MODELS; do
    swift_round "$model"
    "$VENV/bin/python" docs/speed/openvino_int8.py speed --models "$model" --out "$OUT/anchors.jsonl" > /dev/null
    "$VENV/bin/python" ../shared/bench/bench_infer.py --models "$model" --backends "$OV_FLOAT" --out "$OUT/anchors.jsonl" > /dev/null
    swift_round "$model"
done
