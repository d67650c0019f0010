"""PyTorch eager and ONNX Runtime throughput on the CIFAR-10 test set, for comparison with qsh.

Builds the akamaster CIFAR ResNet itself, loads the shared checkpoint, evaluates all selected
images with the given batch size and thread count, and prints one line per runtime:
    <runtime> <model> images=N top1=P seconds=S images_per_s=R
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class LambdaLayer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = LambdaLayer(lambda x: x)
        if stride != 1 or in_planes != planes:
            pad = planes // 4
            self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, depth, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, n, 1)
        self.layer2 = self._stage(32, n, 2)
        self.layer3 = self._stage(64, n, 2)
        self.linear = nn.Linear(64, num_classes)

    def _stage(self, planes, blocks, stride):
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3]).view(out.size(0), -1)
        return self.linear(out)


FILES = {20: "resnet20-12fca82f.th", 32: "resnet32-d509ac18.th", 44: "resnet44-014dd654.th", 56: "resnet56-4bfd9763.th"}
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)


def load_model(models, depth):
    checkpoint = torch.load(os.path.join(models, FILES[depth]), map_location="cpu", weights_only=False)
    state = {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}
    model = ResNet(depth)
    model.load_state_dict(state)
    return model.eval()


def load_test_set(data):
    # `data` is the folder holding cifar-10-batches-bin/, as QSH_DATA is for qsh, or that folder itself.
    batches = os.path.join(data, "cifar-10-batches-bin")
    if os.path.exists(os.path.join(batches, "test_batch.bin")):
        data = batches
    raw = np.fromfile(os.path.join(data, "test_batch.bin"), dtype=np.uint8).reshape(-1, 3073)
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def normalized(pixels):
    return ((pixels.astype(np.float32) / 255.0) - MEAN) / STD


def timed(run_batch, pixels, labels, batch):
    correct = 0
    start = time.perf_counter()
    for first in range(0, len(labels), batch):
        logits = run_batch(normalized(pixels[first:first + batch]))
        correct += int((logits.argmax(1) == labels[first:first + batch]).sum())
    seconds = time.perf_counter() - start
    return correct, seconds


def report(runtime, name, count, correct, seconds):
    print(f"{runtime} {name} images={count} top1={100.0 * correct / count:.2f} seconds={seconds:.3f} "
          f"images_per_s={count / seconds:.1f}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("depths", nargs="*", type=int, default=[20, 56])
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    pixels, labels = load_test_set(args.data)
    if args.limit:
        pixels, labels = pixels[:args.limit], labels[:args.limit]

    import onnxruntime as ort

    for depth in args.depths:
        name = f"resnet{depth}"
        model = load_model(args.models, depth)
        with torch.inference_mode():
            def eager(x):
                return model(torch.from_numpy(x)).numpy()
            best = min((timed(eager, pixels, labels, args.batch) for _ in range(args.repeats)), key=lambda r: r[1])
        report("pytorch-eager", name, len(labels), *best)

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"{name}.onnx")
            torch.onnx.export(model, torch.zeros(1, 3, 32, 32), path, input_names=["x"], output_names=["logits"],
                              dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, opset_version=17, dynamo=False)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

            def onnx(x):
                return session.run(None, {"x": x})[0]
            best = min((timed(onnx, pixels, labels, args.batch) for _ in range(args.repeats)), key=lambda r: r[1])
            report("onnxruntime", name, len(labels), *best)

            import openvino as ov
            # float32, as qsh and ONNX Runtime compute: OpenVINO's default on CPUs with
            # avx512_bf16 or AMX is bfloat16.
            compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": args.threads,
                                                             "PERFORMANCE_HINT": "LATENCY",
                                                             "INFERENCE_PRECISION_HINT": "f32"})
            request = compiled.create_infer_request()

            def openvino(x):
                return request.infer({0: x})[0]
            best = min((timed(openvino, pixels, labels, args.batch) for _ in range(args.repeats)), key=lambda r: r[1])
            report("openvino", name, len(labels), *best)


if __name__ == "__main__":
    sys.exit(main())
