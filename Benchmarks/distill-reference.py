"""The `distill` loop of qsh in PyTorch (CPU), for comparison.

Same algorithm as Sources/QuantOps/Distillation/Distillation.swift: Gaussian images in normalized
space, clamped to the pixel range; per batch, Adam on the pixels against the loss
    sum over BN layers of mean over channels of (mu_batch - mu_running)^2 + (sigma_batch - sigma_running)^2
with sigma = sqrt(biased batch variance + eps); the model in eval mode; the best images per batch
kept; one final loss check after the last step. Prints one line:
    pytorch <model> samples=N steps=S batch=B threads=T seconds=X initial_loss=L0 final_loss=L1
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_throughput import MEAN, STD, load_model  # noqa: E402


def batch_norm_losses(model):
    """Registers hooks that add each BN input's statistics loss to a list per forward pass."""
    losses = []

    def hook(module, inputs, _output):
        x = inputs[0]
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        sigma = torch.sqrt(var + module.eps)
        running_sigma = torch.sqrt(module.running_var + module.eps)
        losses.append(((mean - module.running_mean) ** 2 + (sigma - running_sigma) ** 2).mean())

    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.register_forward_hook(hook)
    return losses


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", required=True)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = load_model(args.models, args.depth).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    losses = batch_norm_losses(model)
    lower = torch.from_numpy((0 - MEAN) / STD)
    upper = torch.from_numpy((1 - MEAN) / STD)

    start = time.perf_counter()
    batches, optimizers, best, best_loss, initial = [], [], [], [], []
    for first in range(0, args.samples, args.batch):
        count = min(args.batch, args.samples - first)
        images = torch.randn(count, 3, 32, 32)
        images = torch.max(torch.min(images, upper), lower).requires_grad_(True)
        batches.append(images)
        optimizers.append(torch.optim.Adam([images], lr=args.lr))
        best.append(images.detach().clone())
        best_loss.append(float("inf"))
        initial.append(0.0)

    def loss_of(images):
        losses.clear()
        model(images)
        return torch.stack(losses).sum()

    for step in range(args.steps + 1):
        for index, images in enumerate(batches):
            if step == args.steps:
                with torch.no_grad():
                    loss = loss_of(images)
            else:
                optimizers[index].zero_grad()
                loss = loss_of(images)
            value = loss.item()
            if step == 0:
                initial[index] = value
            if value < best_loss[index]:
                best_loss[index] = value
                best[index] = images.detach().clone()
            if step == args.steps:
                continue
            loss.backward()
            optimizers[index].step()
            with torch.no_grad():
                images.copy_(torch.max(torch.min(images, upper), lower))
    seconds = time.perf_counter() - start
    print(f"pytorch resnet{args.depth} samples={args.samples} steps={args.steps} batch={args.batch} threads={args.threads} "
          f"seconds={seconds:.2f} initial_loss={sum(initial) / len(initial):.4f} final_loss={sum(best_loss) / len(best_loss):.4f}")


if __name__ == "__main__":
    main()
