#!/usr/bin/env python3
"""The int8 anchor of `vit --precision int8`: OpenVINO running a timm ViT quantised by NNCF's post-training
quantisation (`nncf.quantize`, model_type TRANSFORMER, the recipe OpenVINO documents for ViTs).

Speed (`speed`): the models and settings of ../shared/bench/bench_infer.py (random weights, 2 threads, latency hint,
one stream, its ONNX export), calibrated on 64 random images (speed does not depend on the values); one JSON line
per model and batch in bench_infer's format, backend "ov_int8" (OpenVINO's default precision for what stays
unquantised: bf16 on AVX512-BF16 CPUs) or "ov_int8_f32" (that forced to f32).

Accuracy (`accuracy FOLDER`): a timm folder (the built-in model) quantised by NNCF on 300 CIFAR-10 training images,
then top-1 on the 10,000 test images, beside the float model's, and the agreement of the two's top-1.

    python docs/speed/openvino_int8.py speed [--models vit_tiny_patch16_224,...] [--batches 1,16] [--out F.jsonl]
    python docs/speed/openvino_int8.py accuracy Sources/vit/Resources/cifar10-vit ../shared/data/cifar10-jpg.tar.gz
"""
import argparse
import io
import json
import os
import sys
import tarfile

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/bench")
sys.path.insert(0, os.environ.get("BENCH", BENCH))
import common  # noqa: E402  (../shared/bench: threads, timing, environment report)

os.environ.setdefault("OMP_NUM_THREADS", str(common.THREADS))
import numpy as np  # noqa: E402
import nncf  # noqa: E402
import openvino as ov  # noqa: E402
import torch  # noqa: E402
import timm  # noqa: E402

torch.set_num_threads(common.THREADS)


def quantized(ovm, samples):
    return nncf.quantize(ovm, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(samples))


def compiled(ovm, force_f32):
    config = {"INFERENCE_NUM_THREADS": common.THREADS, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if force_f32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return ov.Core().compile_model(ovm, "CPU", config)


def speed(args):
    import bench_infer  # the same ONNX export as the other anchors

    env = common.env_report({"versions": {"openvino": ov.__version__, "nncf": nncf.__version__, "torch": torch.__version__}})
    print("# ENV", env, flush=True)
    for name in args.models.split(","):
        model = bench_infer.make_model(name)
        path, how = bench_infer.export_onnx(model, name, args.onnx_dir)
        for batch in [int(b) for b in args.batches.split(",")]:
            ovm = ov.Core().read_model(path)
            ovm.reshape({ovm.inputs[0].get_any_name(): [batch, 3, 224, 224]})
            rng = np.random.default_rng(0)
            samples = [rng.standard_normal((batch, 3, 224, 224), dtype=np.float32) for _ in range(max(2, 64 // batch))]
            int8 = quantized(ovm, samples)
            for backend in args.backends.split(","):
                net = compiled(int8, force_f32=backend == "ov_int8_f32")
                request = net.create_infer_request()
                x = samples[0]
                times = common.time_fn(lambda: request.infer({0: x}, share_inputs=True), warmup=3, min_runs=7, min_time=3.0)
                s = common.summarize(times)
                record = {
                    "bench": "infer", "model": name, "backend": backend, "batch": batch,
                    "min_ms": s["min_s"] * 1e3, "median_ms": s["median_s"] * 1e3,
                    "ips_best": batch / s["min_s"], "ips_median": batch / s["median_s"], "n": s["n"],
                    "precision": str(net.get_property("INFERENCE_PRECISION_HINT")),
                    "ov_matmul_runtime_precision": bench_infer.ov_precision_summary(net), "onnx_export": how,
                }
                record.update(common.LAST_STATS)
                common.emit(args.out, record)


def cifar(archive, part, mean, std, names, limit=None):
    images, labels = [], []
    with tarfile.open(archive) as tar:
        for member in tar:
            if not (member.isfile() and member.name.startswith(part + "/")):
                continue
            from PIL import Image

            pixels = np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"), dtype=np.float32) / 255
            images.append(((pixels - mean) / std).transpose(2, 0, 1).astype(np.float32))
            labels.append(names.index(member.name.split("/")[1]))
    order = np.arange(len(images)) if limit is None else np.random.default_rng(0).permutation(len(images))[:limit]
    return np.stack([images[i] for i in order]), np.array([labels[i] for i in order])


def accuracy(args):
    model = timm.create_model("local-dir:" + os.path.abspath(args.folder), pretrained=True).eval()
    names = json.load(open(os.path.join(args.folder, "config.json")))["label_names"]
    mean, std = np.array(model.pretrained_cfg["mean"]), np.array(model.pretrained_cfg["std"])
    test, labels = cifar(args.data, "test", mean, std, names)
    calibration, _ = cifar(args.data, "train", mean, std, names, limit=300)
    size = test.shape[-1]
    # One image a sample, calibration and test alike.
    ovm = ov.convert_model(model, example_input=torch.zeros(1, 3, size, size))
    int8 = quantized(ovm, [calibration[i:i + 1] for i in range(len(calibration))])
    results = {}
    for label, net in [("openvino_fp32", compiled(ovm, True)), ("openvino_int8", compiled(int8, False))]:
        request = net.create_infer_request()
        predictions = np.concatenate([request.infer({0: test[i:i + 1]})[0].argmax(1) for i in range(len(test))])
        results[label] = predictions
    with torch.inference_mode():
        results["timm_fp32"] = np.concatenate([model(torch.from_numpy(test[i:i + 500])).argmax(1).numpy() for i in range(0, len(test), 500)])
    summary = {k: float((v == labels).mean()) for k, v in results.items()}
    summary["int8_agrees_with_fp32"] = float((results["openvino_int8"] == results["timm_fp32"]).mean())
    summary["count"] = len(labels)
    summary["nncf"] = nncf.__version__
    summary["openvino"] = ov.__version__
    print(json.dumps(summary))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--models", default="vit_tiny_patch16_224,vit_small_patch16_224,vit_base_patch16_224")
    s.add_argument("--batches", default="1,16")
    s.add_argument("--backends", default="ov_int8,ov_int8_f32")
    s.add_argument("--onnx-dir", default=os.environ.get("ANCHOR_CACHE", "/tmp/anchors/cache") + "/onnx")
    s.add_argument("--out", default=None)
    a = sub.add_parser("accuracy")
    a.add_argument("folder")
    a.add_argument("data")
    args = parser.parse_args()
    speed(args) if args.what == "speed" else accuracy(args)


if __name__ == "__main__":
    main()
