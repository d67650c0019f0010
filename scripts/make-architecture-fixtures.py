#!/usr/bin/env python3
"""Writes the standard-architecture fixtures of Tests/QuantOpsTests/Fixtures/architectures.

Each network has the real structure and the real state-dict key names of its PyTorch
definition (torchvision ResNet-18/34/50, VGG16-BN and MobileNetV2; the kuangliu/pytorch-cifar
ResNet-18 and VGG16-BN) at reduced width, so that the files stay small while recognition by
layer counts is exercised. The modules are written out here with torchvision's attribute names,
so torchvision itself is not needed. Weights are random, batch-norm statistics randomized, and the
model is in eval mode. For each NAME:

  NAME.pth          torch.save(state_dict), zip format
  NAME.input.npy    float32 (2, 3, S, S) images (already normalized)
  NAME.logits.npy   float32 (2, classes): the PyTorch model on the input

The VGG16-BN ImageNet head needs a 7x7 map after the features (AdaptiveAvgPool2d(7) is then the
identity), that is 224x224 images; to keep the file small its input is stored at 56x56 and the
test repeats every pixel 4x4 (nearest-neighbour upsampling) before running the model, as done here.

Deterministic: run it again and the files are byte-identical.
Usage: python3 scripts/make-architecture-fixtures.py
"""
import io
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "QuantOpsTests", "Fixtures", "architectures")
CLASSES = 10


# torchvision ResNet (v1.5: a bottleneck's stride is on its 3x3 convolution).
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
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, widths):
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
        self.fc = nn.Linear(widths[3] * block.expansion, CLASSES)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# kuangliu/pytorch-cifar ResNet-18.
class CIFARBasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CIFARResNet(nn.Module):
    def __init__(self, num_blocks, widths):
        super().__init__()
        self.in_planes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = self._make_layer(widths[0], num_blocks[0], 1)
        self.layer2 = self._make_layer(widths[1], num_blocks[1], 2)
        self.layer3 = self._make_layer(widths[2], num_blocks[2], 2)
        self.layer4 = self._make_layer(widths[3], num_blocks[3], 2)
        self.linear = nn.Linear(widths[3], CLASSES)

    def _make_layer(self, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(CIFARBasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)
        return self.linear(out.view(out.size(0), -1))


# VGG16-BN: torchvision's (ImageNet head) and kuangliu's (CIFAR, one linear layer).
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg_features(divisor, trailing_avgpool):
    layers, channels = [], 3
    for v in VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v // divisor, 3, padding=1), nn.BatchNorm2d(v // divisor), nn.ReLU(inplace=True)]
            channels = v // divisor
    if trailing_avgpool:
        layers.append(nn.AvgPool2d(1, 1))
    return nn.Sequential(*layers), channels


class VGG(nn.Module):
    def __init__(self, divisor, hidden):
        super().__init__()
        self.features, channels = vgg_features(divisor, False)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(channels * 49, hidden), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(hidden, CLASSES))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class CIFARVGG(nn.Module):
    def __init__(self, divisor):
        super().__init__()
        self.features, channels = vgg_features(divisor, True)
        self.classifier = nn.Linear(channels, CLASSES)

    def forward(self, x):
        out = self.features(x)
        return self.classifier(out.view(out.size(0), -1))


# torchvision MobileNetV2.
def make_divisible(v, divisor, min_value=None):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNReLU6(nn.Sequential):
    def __init__(self, inp, oup, kernel=3, stride=1, groups=1):
        super().__init__(nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = [] if expand_ratio == 1 else [ConvBNReLU6(inp, hidden, 1)]
        layers += [ConvBNReLU6(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, width_mult, round_nearest, last_channel, setting=None):
        super().__init__()
        setting = setting or [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                              [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
        input_channel = make_divisible(32 * width_mult, round_nearest)
        features = [ConvBNReLU6(3, input_channel, stride=2)]
        for t, c, n, s in setting:
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t))
                input_channel = output_channel
        features.append(ConvBNReLU6(input_channel, last_channel, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channel, CLASSES))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def randomize(model):
    """Weights scaled to keep activations of order one; batch norms with random statistics."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            nn.init.normal_(module.weight, 0.0, (2.0 / fan_in) ** 0.5)
            if module.bias is not None:
                nn.init.uniform_(module.bias, -0.1, 0.1)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.num_batches_tracked.fill_(100)
    return model.eval()


def save(name, model, size, upsample=1):
    os.makedirs(OUT, exist_ok=True)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, size // upsample, size // upsample, generator=generator)
    full = images.repeat_interleave(upsample, 2).repeat_interleave(upsample, 3) if upsample > 1 else images
    with torch.no_grad():
        logits = model(full)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    with open(os.path.join(OUT, name + ".pth"), "wb") as file:
        file.write(buffer.getvalue())
    np.save(os.path.join(OUT, name + ".input.npy"), images.numpy().astype(np.float32))
    np.save(os.path.join(OUT, name + ".logits.npy"), logits.numpy().astype(np.float32))
    parameters = sum(t.numel() for t in model.state_dict().values())
    print(f"{name}: {parameters} values, {len(buffer.getvalue())} bytes, logits {tuple(logits.shape)}")


def main():
    torch.manual_seed(0)
    save("resnet18", randomize(ResNet(BasicBlock, [2, 2, 2, 2], [4, 8, 12, 16])), 48)
    save("resnet34", randomize(ResNet(BasicBlock, [3, 4, 6, 3], [4, 8, 12, 16])), 48)
    save("resnet50", randomize(ResNet(Bottleneck, [3, 4, 6, 3], [4, 6, 8, 12])), 48)
    save("cifar-resnet18", randomize(CIFARResNet([2, 2, 2, 2], [4, 8, 12, 16])), 32)
    save("vgg16bn", randomize(VGG(32, 16)), 224, upsample=4)
    save("cifar-vgg16bn", randomize(CIFARVGG(32)), 32)
    # Stage widths all different: stage boundaries show in the channel counts.
    save("mobilenetv2", randomize(MobileNetV2(1.0, 2, 32, [[1, 4, 1, 1], [6, 6, 2, 2], [6, 8, 3, 2], [6, 10, 4, 2],
                                                             [6, 12, 3, 1], [6, 14, 3, 2], [6, 16, 1, 1]])), 48)
    # torchvision's own setting at width 0.1: stages 16, 24, 32 and 64 all get 8 channels, 96 and 160
    # both 16, so the strides come from the standard block counts; the first block (stride 1,
    # 8 channels in and out) has a residual add.
    save("mobilenetv2-narrow", randomize(MobileNetV2(0.1, 8, 32)), 48)

if __name__ == "__main__":
    main()
