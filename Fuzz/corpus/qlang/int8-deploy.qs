# Int8 deployment: the fake-quant simulation against real integer execution (engine=int8), then
# the files a runtime takes. docs/export.md explains the engine; docs/ptq.md the whole path.
#
# Run:  qsh examples/int8-deploy.qs   (release build, 2 cores: 3.5 minutes at load average 3, beside
#       a test build; the simulated evaluations take most of it)
# W7A8 = 7-bit symmetric per-channel weights, 8-bit asymmetric per-tensor activations, BN folded,
# 512 calibration images (minmax), full test set. 7-bit weights are the scheme for CPUs without
# VNNI: every convolution runs in int8 there. With 8-bit weights those CPUs keep the layers in
# float (the integer kernels' int16 pair sums could saturate), so W8A8 int8 equals the simulation.
#
# Tolerances: integer and float sums round differently at the edge of a rounding step, so the
# int8 engine may differ from the simulation by a few images (0.05 = 5 images); other CPUs pick
# other kernels and can tip a borderline image as well.

load resnet20
fold bn
quantize weights bits=7 scheme=symmetric granularity=channel
quantize activations bits=8 scheme=asymmetric granularity=tensor
calibrate data=cifar10-train samples=512 method=minmax
eval cifar10
expect top1 == 91.82 +- 0.05
eval cifar10 engine=int8
expect top1 == 91.80 +- 0.05
layers engine=int8
export onnx "resnet20-w7a8.onnx"
save "resnet20-w7a8.safetensors" int8=true

load resnet56
fold bn
quantize weights bits=7 scheme=symmetric granularity=channel
quantize activations bits=8 scheme=asymmetric granularity=tensor
calibrate data=cifar10-train samples=512 method=minmax
eval cifar10
expect top1 == 93.43 +- 0.05
eval cifar10 engine=int8
expect top1 == 93.46 +- 0.05

# 8-bit weights: int8 on CPUs with VNNI, float on the others; the same top-1 either way.
load resnet20
fold bn
quantize weights bits=8 scheme=symmetric granularity=channel
quantize activations bits=8 scheme=asymmetric granularity=tensor
calibrate data=cifar10-train samples=512 method=minmax
eval cifar10 engine=int8
expect top1 == 91.77 +- 0.1

results
