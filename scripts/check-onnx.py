#!/usr/bin/env python3
"""Checks `vit export --format onnx` against `vit` itself, with ONNX Runtime (PyPI's onnxruntime, numpy, onnx).

For each model: export it, check the file with onnx.checker (full_check: types and shapes inferred through the
graph), and run the same random images [4, 3, S, S] through ONNX Runtime and through `vit serve --precision fp32`
(its /v2 infer endpoint takes FP32 images already preprocessed: the model code `vit predict` runs, to the bit, as
ServeTests checks). The logits (CLIP: the embeddings) must agree within 1e-4; a batch of 1 and of 4 are both run,
so the batch axis is dynamic. Exit status 0 when every model agrees, 1 otherwise.

    python3 -m venv .build/onnx-venv && .build/onnx-venv/bin/pip install onnxruntime onnx numpy
    .build/onnx-venv/bin/python scripts/check-onnx.py [--vit .build/release/vit] [MODEL ...]

Without MODELs: the built-in model, the ViT/DeiT fixtures in Tests/ViTTests/Fixtures and the CLIP fixture.
"""
import argparse, json, os, re, subprocess, sys, tempfile, urllib.request
import numpy as np, onnx, onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests/ViTTests/Fixtures")
DEFAULT = ["builtin:cifar10-vit"] + [os.path.join(FIXTURES, name) for name in [
    "timm-vit-p8-d64-h4-l2-i32", "timm-vit-gap-p8-d64-h4-l2-i32", "timm-deit-distilled-p8-d64-h4-l2-i32",
    "hf-vit-p8-d64-h4-l2-i32", "hf-deit-distilled-p8-d64-h4-l2-i32", "jax-vit-p8-d64-h4-l2-i32/model.npz",
    "pth-vit-p8-d64-l2-i32/state_dict.pth"]] + [os.path.join(ROOT, "Tests/CLIPTests/Fixtures")]
TOLERANCE = 1e-4


def serve(vit, model):
    """`vit serve` on a free loopback port; returns the process and its base URL."""
    process = subprocess.Popen([vit, "serve", "--port", "0", "--precision", "fp32", "--model", f"m={model}"],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    said = ""
    for line in process.stderr:
        said += line
        found = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
        if found:
            # Drain stderr (the access log) so the server never blocks on a full pipe.
            import threading
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, f"http://127.0.0.1:{found.group(1)}"
    raise SystemExit(f"{model}: vit serve did not start: {said}")


def infer(url, images, output):
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(images.shape),
                        "data": images.ravel().tolist()}], "outputs": [{"name": output}]}
    request = urllib.request.Request(f"{url}/v2/models/m/infer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(request))
    out = answer["outputs"][0]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def check(vit, model, folder):
    path = os.path.join(folder, re.sub(r"[^A-Za-z0-9]+", "-", os.path.basename(model.rstrip("/"))) + ".onnx")
    exported = subprocess.run([vit, "export", "--format", "onnx", model, "-o", path], capture_output=True, text=True)
    if exported.returncode != 0:
        print(f"FAIL {model}: vit export said {exported.stderr.strip()}")
        return False
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape  # ['batch', 3, S, S]
    output = session.get_outputs()[0].name  # logits, features or embedding
    served = "embedding" if output == "features" else output
    process, url = serve(vit, model)
    try:
        worst = 0.0
        for batch in (1, 4):
            images = np.random.default_rng(batch).standard_normal((batch, *shape[1:])).astype(np.float32)
            ours = infer(url, images, served)
            theirs = session.run(None, {"image": images})[0]
            if ours.shape != theirs.shape:
                print(f"FAIL {model}: ONNX Runtime gives {theirs.shape}, vit {ours.shape}")
                return False
            worst = max(worst, float(np.abs(ours - theirs).max()))
    finally:
        process.terminate()
        process.wait()
    verdict = "ok  " if worst <= TOLERANCE else "FAIL"
    print(f"{verdict} {os.path.relpath(model, ROOT) if os.path.exists(model) else model}: {output} {list(theirs.shape[1:])}, "
          f"max |vit - onnxruntime| = {worst:.2e} (batches of 1 and 4)")
    return worst <= TOLERANCE


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vit", default=os.path.join(ROOT, ".build/debug/vit"))
    parser.add_argument("models", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}")
    with tempfile.TemporaryDirectory() as folder:
        results = [check(args.vit, model, folder) for model in args.models]
    print(f"{sum(results)} of {len(results)} models agree within {TOLERANCE}")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
