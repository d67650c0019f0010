#!/usr/bin/env python3
"""Writes ONNX Runtime reference logits for ../shared/models/efficientnet-lite0.onnx.

Preprocessing: the PIL evaluation transform of scripts/make-imagefolder-reference.py (convert to
RGB, bilinear resize of the shorter side to 256, center crop 224), CHW, then
x = (pixel - 127) / 128 in float32.

Writes into Tests/QuantOpsTests/Fixtures/onnx/:
  efficientnet-lite0.input-u8.npy   uint8 [2, 3, 224, 224], the crops of the first 2 sample
                                    images (class folders sorted), CHW
  efficientnet-lite0.logits.npy     float32 [2, 1000], ORT (CPUExecutionProvider) logits for them

Then prints ORT's top-1 / top-5 over every image of the sample (one per class; the sorted
folder index is the label).

Needs numpy, Pillow, onnxruntime.
Usage: python3 scripts/make-efficientnet-reference.py [MODEL.onnx [IMAGENET_SAMPLE_DIR]]
  (defaults: $QSH_MODELS or ../shared/models next to the repository, and $QSH_DATA or
  ../shared/data, /imagenet-sample)
"""

import importlib.util
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "QuantOpsTests", "Fixtures", "onnx")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")

spec = importlib.util.spec_from_file_location(
    "imagefolder_reference", os.path.join(ROOT, "scripts", "make-imagefolder-reference.py"))
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)


def crop_chw(path):
    with Image.open(path) as img:
        _, crop = reference.eval_transform(img, 256, 224)
    return np.ascontiguousarray(crop.transpose(2, 0, 1))


def normalize(u8):
    return (u8.astype(np.float32) - 127.0) / 128.0


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("QSH_MODELS", os.path.join(SHARED, "models")), "efficientnet-lite0.onnx")
    root = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.environ.get("QSH_DATA", os.path.join(SHARED, "data")), "imagenet-sample")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    samples = []
    for label, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, c))):
            samples.append((os.path.join(root, c, f), label))

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    first = np.stack([crop_chw(p) for p, _ in samples[:2]])
    logits = session.run(None, {input_name: normalize(first)})[0].astype(np.float32)
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, "efficientnet-lite0.input-u8.npy"), first)
    np.save(os.path.join(OUT, "efficientnet-lite0.logits.npy"), logits)
    print(f"first 2: labels {[l for _, l in samples[:2]]}, argmax {logits.argmax(1).tolist()}, "
          f"max |logit| {np.abs(logits).max():.4f}")

    top1 = top5 = 0
    batch = 50
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        x = normalize(np.stack([crop_chw(p) for p, _ in chunk]))
        out = session.run(None, {input_name: x})[0]
        best = np.argsort(-out, axis=1)[:, :5]
        for row, (_, label) in zip(best, chunk):
            top1 += int(row[0] == label)
            top5 += int(label in row)
    n = len(samples)
    print(f"{n} images: top-1 {100.0 * top1 / n:.1f}% ({top1}), top-5 {100.0 * top5 / n:.1f}% ({top5})")


if __name__ == "__main__":
    main()
