# Find the layer that breaks an int8 model, and fix it with mixed precision.
#
# Run:  qsh examples/find-broken-layer.qs
# A fault is planted on purpose: layer 8 gets 2-bit per-tensor weights while every other layer
# is 8-bit per channel. 'analyze' must point at it, 'sensitivity' must suggest keeping it float,
# and keeping it float must bring the accuracy back. Measured on every 20th test image (500
# images, where float resnet20 scores 90.0): 18.4% with the fault, 90.0% with layer 8 kept float.
# About 40 s on 2 cores busy with other work (load average 7).

load resnet20
fold bn
quantize weights bits=8 scheme=symmetric granularity=channel
quantize weights layer 8 bits=2 granularity=tensor      # the planted fault
quantize activations bits=8 scheme=asymmetric granularity=tensor
calibrate data=cifar10-train samples=256 method=minmax
eval cifar10 stride=20
expect top1 < 80                                        # the fault costs more than 10 points

# Layer-wise error against the float model: "own dB" removes the noise a layer inherits, so
# the layer that adds the most noise is the one to look at.
analyze data=cifar10-train samples=64 order=model
expect sqnr_harmful_layer == 8

# One layer at a time: quantized alone, then kept float; the suggestions come last.
sensitivity stride=50

keep layer 8 float
calibrate data=cifar10-train samples=256 method=minmax   # ranges for the repaired weights
eval cifar10 stride=20
expect top1 >= 89                                       # back within a point of float on these images (90.0)
