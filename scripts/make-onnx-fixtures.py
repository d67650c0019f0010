#!/usr/bin/env python3
"""Writes the small ONNX model fixtures in Tests/QuantOpsTests/Fixtures/onnx/.

Each fixture is a reduced-width copy of a real CNN architecture with deterministic random
weights, exported by PyTorch's TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`)
with a dynamic batch axis named "N", input "input" and output "logits" (10 classes). For every
model NAME the script writes

  NAME.onnx          the exported graph
  NAME.input.npy     float32 [2, 3, H, W], standard normal, seeded
  NAME.logits.npy    float32 [2, 10], ONNX Runtime (CPUExecutionProvider) output for that input

Weights: torch.manual_seed per model; convolutions use Kaiming-normal (fan in, ReLU gain) so the
activations neither vanish nor explode through the depth; every BatchNorm gets random
gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1), running_mean ~ N(0, 0.1), running_var ~ U(0.5, 1.5), so
that a wrong BatchNorm shows in the logits.

Export modes: the exporter's default (TrainingMode.EVAL) folds a BatchNorm that directly follows
a convolution into that convolution, as real exports of eval-mode models do; BatchNorms that
follow anything else (DenseNet's pre-activation BN after a Concat) stay. Some fixtures are
exported with TrainingMode.PRESERVE (the model is still in eval mode), which keeps every
BatchNorm as a BatchNormalization node and Dropout as Identity, as exports that ask to keep the
training-related structure look. Opsets: paddedconv 11, mobilenetv2 17, squeezeexcite 18
(HardSwish exists from 14; ReduceMean takes its axes as an input from 18), the rest 13.

Deterministic: rerunning rewrites the same bytes. Needs torch, onnx, onnxruntime, numpy.
Usage: python3 scripts/make-onnx-fixtures.py
"""

import collections
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "QuantOpsTests", "Fixtures", "onnx")
NUM_CLASSES = 10


def conv_bn(cin, cout, k, stride=1, padding=0, groups=1):
    return [nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout)]


# ---------------------------------------------------------------- ResNet (torchvision layout)

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        # torchvision's ResNet v1.5: the stride sits on the 3x3 convolution.
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, widths, num_classes=NUM_CLASSES):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, widths[0], layers[0], 1)
        self.layer2 = self._make_layer(block, widths[1], layers[1], 2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], 2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


# ---------------------------------------------------------------- VGG16-BN (CIFAR-style head)

class VGG(nn.Module):
    def __init__(self, cfg, hidden, num_classes=NUM_CLASSES):
        super().__init__()
        layers, cin = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(hidden, num_classes))

    def forward(self, x):
        x = torch.flatten(self.features(x), 1)
        return self.classifier(x)


# ---------------------------------------------------------------- MobileNetV2 (torchvision layout)

def make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_bn_relu6(cin, cout, k, stride=1, groups=1):
    return nn.Sequential(*conv_bn(cin, cout, k, stride, (k - 1) // 2, groups), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand_ratio):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(cin, hidden, 1))
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden), *conv_bn(hidden, cout, 1)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    # (expansion t, channels c, repeats n, stride s); torchvision's table with fewer repeats.
    SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2], [6, 64, 1, 2], [6, 96, 2, 1],
               [6, 160, 1, 2], [6, 320, 1, 1]]

    def __init__(self, width_mult=0.2, last_channel=128, num_classes=NUM_CLASSES):
        super().__init__()
        cin = make_divisible(32 * width_mult)
        features = [conv_bn_relu6(3, cin, 3, 2)]
        for t, c, n, s in self.SETTING:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(conv_bn_relu6(cin, last_channel, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channel, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = x.mean([2, 3])
        return self.classifier(x)


# ---------------------------------------------------------------- DenseNet block + transition

class DenseLayer(nn.Module):
    def __init__(self, cin, growth, bn_size=4):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(y)))


class DenseBlockNet(nn.Module):
    def __init__(self, stem=16, growth=8, layers=3, num_classes=NUM_CLASSES):
        super().__init__()
        self.stem = nn.Conv2d(3, stem, 3, padding=1, bias=False)
        self.layers = nn.ModuleList(DenseLayer(stem + i * growth, growth) for i in range(layers))
        c = stem + layers * growth
        self.transition = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c // 2, 1, bias=False),
            nn.AvgPool2d(2, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c // 2, num_classes)

    def forward(self, x):
        features = self.stem(x)
        for layer in self.layers:
            features = torch.cat([features, layer(features)], 1)
        x = self.pool(self.transition(features))
        return self.fc(torch.flatten(x, 1))


# ---------------------------------------------------------------- squeeze-excite and friends

class SqueezeExcite(nn.Module):
    """Gate = sigmoid(expand(relu(reduce(global average pool)))), multiplied into the features."""

    def __init__(self, c, squeeze):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class HardGate(nn.Module):
    """MobileNetV3-style gate with a mean over H, W and a hard sigmoid."""

    def __init__(self, c, squeeze):
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        s = x.mean([2, 3], keepdim=True)
        return x * self.gate(self.fc2(F.relu(self.fc1(s))))


class SqueezeExciteNet(nn.Module):
    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 16, 3, 1, 1), nn.ReLU(inplace=True))
        self.se = SqueezeExcite(16, 4)
        self.block_hs = nn.Sequential(*conv_bn(16, 24, 3, 2, 1), nn.Hardswish())
        self.block_lrelu = nn.Sequential(*conv_bn(24, 32, 3, 2, 1), nn.LeakyReLU(0.1))
        self.hard_gate = HardGate(32, 8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.se(self.stem(x))
        x = self.hard_gate(self.block_lrelu(self.block_hs(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


# ---------------------------------------------------------------- explicit asymmetric padding

class PaddedConvNet(nn.Module):
    """TensorFlow-"SAME"-style stride-2 convolutions written as ZeroPad2d((0, 1, 0, 1)) + pad 0."""

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 8, 3, 1, 1), nn.ReLU(inplace=True))
        self.down1 = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(8, 16, 3, 2, 0), nn.ReLU(inplace=True))
        self.down2 = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(16, 16, 3, 2, 0), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 8 * 8, num_classes))

    def forward(self, x):
        return self.head(self.down2(self.down1(self.stem(x))))


# ---------------------------------------------------------------- arithmetic with constants

class ConstantArithmeticNet(nn.Module):
    """Normalization inside the graph (Sub, Div by per-channel constants), hard-swish written out
    as x * relu6(x + 3) / 6 (Add, Clip, Div, Mul), and a scaled classifier input (Mul by a scalar),
    as exporters of older opsets and hand-written models produce them."""

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1)
        self.conv2 = nn.Conv2d(8, 16, 3, 2, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = self.conv1(x)
        x = x * F.relu6(x + 3) / 6
        x = torch.relu(self.conv2(x))
        return self.fc(torch.flatten(self.pool(x), 1) * 0.5)


# ---------------------------------------------------------------- fixtures

VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

# name: (constructor, input side, opset, export mode, seed)
EVAL = torch.onnx.TrainingMode.EVAL
PRESERVE = torch.onnx.TrainingMode.PRESERVE
FIXTURES = {
    "resnet18": (lambda: ResNet(BasicBlock, [2, 2, 2, 2], [4, 8, 16, 32]), 64, 13, PRESERVE, 18),
    "resnet50": (lambda: ResNet(Bottleneck, [2, 2, 1, 1], [4, 8, 16, 32]), 64, 13, PRESERVE, 50),
    "vgg16bn": (lambda: VGG([v if v == "M" else v // 16 for v in VGG16_CFG], 64), 32, 13, EVAL, 16),
    "mobilenetv2": (lambda: MobileNetV2(0.2, 128), 64, 17, PRESERVE, 2),
    "denseblock": (lambda: DenseBlockNet(), 32, 13, EVAL, 121),
    "squeezeexcite": (lambda: SqueezeExciteNet(), 32, 18, PRESERVE, 7),
    "paddedconv": (lambda: PaddedConvNet(), 32, 11, EVAL, 11),
    "constantarithmetic": (lambda: ConstantArithmeticNet(), 32, 13, EVAL, 31),
}


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.0 / m.in_features) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def export(name, make, side, opset, mode, seed):
    torch.manual_seed(seed)
    model = make()
    randomize(model, seed)
    model.eval()
    x = np.random.default_rng(seed).standard_normal((2, 3, side, side)).astype(np.float32)
    path = os.path.join(OUT, name + ".onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.from_numpy(x),), path, dynamo=False, opset_version=opset, training=mode,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    onnx.checker.check_model(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": x})[0].astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    scale = float(np.abs(reference).max())
    torch_diff = float(np.abs(logits - reference).max()) / scale
    if torch_diff > 1e-4:
        sys.exit(f"{name}: ONNX Runtime differs from PyTorch by {torch_diff:.2e} (relative)")
    np.save(os.path.join(OUT, name + ".input.npy"), x)
    np.save(os.path.join(OUT, name + ".logits.npy"), logits)
    graph = onnx.load(path)
    ops = collections.Counter(n.op_type for n in graph.graph.node)
    size = os.path.getsize(path)
    print(f"{name}: {size} bytes, opset {opset}, export mode {mode.name}, input {list(x.shape)}, "
          f"max |logit| {np.abs(logits).max():.4f}, torch vs ORT {torch_diff:.1e} (relative), "
          f"argmax {logits.argmax(1).tolist()}")
    print("  ops:", dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))))
    return size


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    total = 0
    for name, spec in FIXTURES.items():
        total += export(name, *spec)
    npy = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT)
              if f.endswith(".npy") and not f.startswith("efficientnet"))
    print(f"total: {total} bytes of .onnx, {npy} bytes of .npy")


if __name__ == "__main__":
    main()
