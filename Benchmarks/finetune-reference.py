"""The training step of qsh's `finetune ait inundation=false` in PyTorch (CPU), for comparison.

Same work per step as Sources/QuantOps/Finetuning/QuantizationAwareTraining.swift:
- the akamaster CIFAR ResNet with its checkpoint, batch norms on their running statistics
  (inference mode, as qsh trains them) while gradients flow to every parameter;
- float master weights, fake-quantized to 4-bit asymmetric per output channel on a grid fixed
  from the initial weights: range [min(W, 0), max(W, 0)], scale = (max - min) / 15,
  zero point = round(-min / scale), by `torch.fake_quantize_per_channel_affine` (straight-through
  estimator, zero gradient for clipped weights) on all conv and linear layers;
- activations fake-quantized 4-bit asymmetric per tensor where qsh puts them: the network input,
  each conv + BN (+ residual add) + ReLU output and the global-average-pool output; logits float;
  ranges are the extremes (widened to contain 0) of the float model's tensors on the first batch;
- loss KL(teacher || student) on the logits, teacher log-probabilities computed once;
- SGD with Nesterov momentum 0.9, lr 1e-4, over all parameters; batches in a fresh random order
  each epoch.

Timing covers the training steps only (not building the model, calibration or the teacher pass);
the first epoch is a warm-up. Prints one line:
    pytorch resnet<depth> images=N batch=B epochs=E threads=T seconds=X images_per_second=R loss=L0->L1
where seconds and images_per_second cover the epochs after the first.
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_throughput import load_model  # noqa: E402

BITS = 4
LEVELS = (1 << BITS) - 1


def weight_grid(weight):
    """Per-output-channel asymmetric grid of the initial weights: (scale, zero point)."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    low = flat.min(dim=1).values.clamp(max=0)
    high = flat.max(dim=1).values.clamp(min=0)
    scale = ((high - low) / LEVELS).clamp(min=1e-12)
    zero_point = torch.round(-low / scale).clamp(0, LEVELS).to(torch.int32)
    return scale, zero_point


def activation_grid(tensor):
    """Per-tensor asymmetric grid of a calibration tensor's extremes, widened to contain 0."""
    low = min(tensor.min().item(), 0.0)
    high = max(tensor.max().item(), 0.0)
    scale = max((high - low) / LEVELS, 1e-12)
    zero_point = int(min(max(round(-low / scale), 0), LEVELS))
    return scale, zero_point


class QuantizedStudent:
    """Runs the ResNet's modules with fake-quantized weights and activations.

    With `calibrating` set, activations stay float and each quantization point's tensor is
    recorded instead, in execution order, to fix the activation grids.
    """

    def __init__(self, model):
        self.model = model
        self.layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        self.weight_grids = {id(m): weight_grid(m.weight) for m in self.layers}
        self.activation_grids = []
        self.calibrating = False
        self.recorded = []
        self.point = 0

    def weight(self, module):
        scale, zero_point = self.weight_grids[id(module)]
        return torch.fake_quantize_per_channel_affine(module.weight, scale, zero_point, 0, 0, LEVELS)

    def activation(self, x):
        if self.calibrating:
            self.recorded.append(x.detach())
            return x
        scale, zero_point = self.activation_grids[self.point]
        self.point += 1
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, LEVELS)

    def conv(self, module, x):
        return F.conv2d(x, self.weight(module), module.bias, module.stride, module.padding)

    def block(self, block, x):
        out = self.activation(F.relu(block.bn1(self.conv(block.conv1, x))))
        out = block.bn2(self.conv(block.conv2, out))
        return self.activation(F.relu(out + block.shortcut(x)))

    def __call__(self, x):
        self.point = 0
        model = self.model
        out = self.activation(x)
        out = self.activation(F.relu(model.bn1(self.conv(model.conv1, out))))
        for stage in (model.layer1, model.layer2, model.layer3):
            for block in stage:
                out = self.block(block, out)
        out = F.avg_pool2d(out, out.size()[3]).view(out.size(0), -1)
        out = self.activation(out)
        return F.linear(out, self.weight(model.linear), model.linear.bias)

    def calibrate(self, x):
        self.calibrating, self.recorded = True, []
        with torch.no_grad():
            self(x)
        self.activation_grids = [activation_grid(t) for t in self.recorded]
        self.calibrating, self.recorded = False, []


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", required=True)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is a warm-up")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    images = torch.randn(args.images, 3, 32, 32)

    teacher = load_model(args.models, args.depth).eval()
    with torch.no_grad():
        teacher_log = torch.cat([F.log_softmax(teacher(images[i:i + 200]), dim=1)
                                 for i in range(0, args.images, 200)])

    model = load_model(args.models, args.depth)
    model.train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    student = QuantizedStudent(model)
    student.calibrate(images[:args.batch])
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True)

    epoch_seconds, epoch_losses = [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        order = torch.randperm(args.images)
        losses = []
        for first in range(0, args.images, args.batch):
            batch = order[first:first + args.batch]
            optimizer.zero_grad(set_to_none=True)
            logits = student(images[batch])
            loss = F.kl_div(F.log_softmax(logits, dim=1), teacher_log[batch], log_target=True, reduction="batchmean")
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        epoch_seconds.append(time.perf_counter() - start)
        epoch_losses.append(sum(losses) / len(losses))

    seconds = sum(epoch_seconds[1:])
    measured = args.images * (args.epochs - 1)
    per_epoch = " ".join(f"{args.images / s:.1f}" for s in epoch_seconds)
    print(f"pytorch resnet{args.depth} images={args.images} batch={args.batch} epochs={args.epochs} threads={args.threads} "
          f"seconds={seconds:.3f} images_per_second={measured / seconds:.1f} loss={epoch_losses[0]:.5f}->{epoch_losses[-1]:.5f} "
          f"per_epoch_images_per_second={per_epoch}")


if __name__ == "__main__":
    main()
