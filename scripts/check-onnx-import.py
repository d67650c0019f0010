#!/usr/bin/env python3
"""qsh's ONNX import against ONNX Runtime on exports made here, the way users make them.

Each model of scripts/make-onnx-fixtures.py is exported twice from PyTorch: with the TorchScript
exporter (dynamo=False, a dynamic batch axis, weights inside the file) and with the dynamo
exporter (opset 18+, traced at batch 1, weights in an external data file next to the model).
qsh loads each file, evaluates the first CIFAR-10 test images with `eval cifar10 logits to`,
and its logits must equal ONNX Runtime's on the same normalized images within 1e-4 of the
largest logit.

usage: python3 scripts/check-onnx-import.py [--qsh PATH] [--data DIR] [--images N]
Needs torch, onnx, onnxruntime (and onnxscript for the dynamo exporter; skipped without it).
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import torch

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
parser = argparse.ArgumentParser()
parser.add_argument("--qsh", default=os.path.join(root, ".build/release/qsh"))
parser.add_argument("--data", default=os.environ.get("QSH_DATA", os.path.join(root, "../shared/data")))
parser.add_argument("--images", type=int, default=4)
args = parser.parse_args()

spec = importlib.util.spec_from_file_location("fixtures", os.path.join(root, "scripts/make-onnx-fixtures.py"))
fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures)

batches = os.path.join(args.data, "cifar-10-batches-bin")
raw = np.fromfile(os.path.join(batches, "test_batch.bin"), dtype=np.uint8)[: args.images * 3073].reshape(args.images, 3073)
mean, std = 0.5, 0.25
images = (raw[:, 1:].reshape(args.images, 3, 32, 32).astype(np.float32) / 255 - mean) / std
try:
    import onnxscript  # noqa: F401
    exporters = ["torchscript", "dynamo"]
except ImportError:
    exporters = ["torchscript"]
    print("onnxscript is not installed: the dynamo exporter is skipped")

failures = 0
with tempfile.TemporaryDirectory() as work:
    for name, (make, side, opset, mode, seed) in fixtures.FIXTURES.items():
        model = make()
        fixtures.randomize(model, seed)
        model.eval()
        for exporter in exporters:
            path = os.path.join(work, f"{name}-{exporter}.onnx")
            sample = torch.from_numpy(images[:1])
            if exporter == "dynamo":
                torch.onnx.export(model, (sample,), path, dynamo=True, input_names=["input"], output_names=["logits"])
            else:
                torch.onnx.export(model, (sample,), path, dynamo=False, opset_version=opset, training=mode,
                                  input_names=["input"], output_names=["logits"],
                                  dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
            graph = onnx.load(path)
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            # A graph traced at batch 1 takes one image at a time in ONNX Runtime.
            expected = np.concatenate([session.run(None, {graph.graph.input[0].name: images[i:i + 1]})[0]
                                       for i in range(args.images)])
            out = os.path.join(work, f"{name}-{exporter}.npy")
            recipe = f'load m from "{path}" mean={mean} std={std}\neval cifar10 limit={args.images} logits to "{out}"\n'
            run = subprocess.run([args.qsh], input=recipe, text=True, capture_output=True,
                                 env=dict(os.environ, QSH_DATA=args.data))
            opset_used = max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
            if run.returncode != 0:
                failures += 1
                print(f"FAIL {name} ({exporter}, opset {opset_used}): {run.stderr.strip()}")
                continue
            got = np.load(out)
            error = float(np.abs(got - expected).max() / np.abs(expected).max())
            ok = error <= 1e-4
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name} ({exporter}, opset {opset_used}): max error {error:.1e} of the largest logit")
print("all imports equal ONNX Runtime" if failures == 0 else f"{failures} imports differ from ONNX Runtime")
sys.exit(1 if failures else 0)
