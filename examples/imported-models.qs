# Every command on imported ONNX models: a ResNet-18 exported from PyTorch (reduced width, random
# weights: Tests/QuantOpsTests/Fixtures/onnx/resnet18.onnx, run from the repository root) and
# EfficientNet-Lite0 with its ImageNet weights (efficientnet-lite0.onnx in the models directory,
# imagenet-sample/ in the data directory). docs/models.md says what qsh reads.
#
# Run:  qsh examples/imported-models.qs   (about 15 s on 2 cores, from the repository root)

load r18 from "Tests/QuantOpsTests/Fixtures/onnx/resnet18.onnx" mean=0.4914, 0.4822, 0.4465 std=0.2023, 0.1994, 0.2010
layers
eval cifar10 limit=500
recalibrate bn data=cifar10-train samples=256
fold bn
snapshot float
equalize
quantize weights bits=7
biascorrect
quantize activations bits=8
calibrate data=cifar10-train samples=256 method=percentile p=99.99
analyze data=cifar10-train samples=64 order=sorted
sensitivity samples=200
eval cifar10 limit=500
eval cifar10 limit=500 engine=int8
layers engine=int8
export onnx "r18-w7a8.onnx"
save "r18-w7a8.safetensors" int8=true
restore float
mixed dfmpc
compensate dfmpc
eval cifar10 limit=500
reset
distill samples=32 steps=20 batch=32
fold bn
quantize weights bits=4
finetune ait data=distilled epochs=1 batch=16
eval cifar10 limit=500
diff

load lite0 from "efficientnet-lite0.onnx" mean=0.498039 std=0.501961
eval imagefolder "imagenet-sample" limit=100 batch=50
expect top1 == 85 +- 0.05
fold bn
quantize weights bits=8 granularity=channel
quantize activations bits=8
calibrate data="imagefolder:imagenet-sample" samples=64
eval imagefolder "imagenet-sample" limit=100 batch=50
expect top1 >= 80
# DF-MPC on a MobileNet: each block's 4-bit depthwise conv is paired with its 8-bit pointwise
# conv. The depthwise layers do not survive 4 bits (0% on these images, compensation or not):
# the recipe shows the pairing runs on the graph, not that it suits depthwise networks.
reset
mixed dfmpc low=4 high=8
compensate dfmpc
eval imagefolder "imagenet-sample" limit=100 batch=50
export onnx "lite0-mp.onnx"
results
