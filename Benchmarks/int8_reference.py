"""Times ONNX Runtime and OpenVINO on a QDQ file that `qsh export onnx` wrote, on the CIFAR-10
test set, with their int8 kernels (default optimizations: ORT fuses QDQ groups into QLinearConv,
OpenVINO's low-precision transformations run int8 convolutions). Prints one line per runtime:
LABEL RUNTIME top1=... images_per_s=... (best of --repeats, images converted once, before timing)."""
import argparse
import json
import os
import time

import numpy as np


def read_test_set(folder):
    raw = np.fromfile(os.path.join(folder, "test_batch.bin"), dtype=np.uint8).reshape(-1, 3073)
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def normalized(pixels, mean, std):
    values = np.arange(256, dtype=np.float32) / np.float32(255)
    out = np.empty(pixels.shape, dtype=np.float32)
    for c in range(3):
        out[:, c] = ((values - np.float32(mean[c])) / np.float32(std[c]))[pixels[:, c]]
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--data", required=True, help="folder holding test_batch.bin")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--label", default="model")
    args = parser.parse_args()

    import onnx
    entries = {p.key: p.value for p in onnx.load(args.model).metadata_props}
    details = json.loads(entries["qsh"])
    pixels, labels = read_test_set(args.data)
    images = normalized(pixels, details["mean"], details["std"])

    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])

    import openvino as ov
    compiled = ov.Core().compile_model(args.model, "CPU", {"INFERENCE_NUM_THREADS": args.threads})
    request = compiled.create_infer_request()

    runtimes = {
        "onnxruntime": lambda x: session.run(None, {"input": x})[0],
        "openvino": lambda x: np.array(request.infer({0: x})[compiled.output(0)]),
    }
    for name, run in runtimes.items():
        best, logits = 0.0, None
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = np.concatenate([run(images[i:i + args.batch]) for i in range(0, len(images), args.batch)])
            rate = len(images) / (time.perf_counter() - start)
            best, logits = max(best, rate), out
        top1 = 100.0 * float(np.mean(np.argmax(logits, axis=1) == labels))
        print(f"{args.label} {name} top1={top1:.2f} images_per_s={best:.1f}")


if __name__ == "__main__":
    main()
