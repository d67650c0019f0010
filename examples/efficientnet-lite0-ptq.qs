# The practical-PTQ paper's MobileNet table on EfficientNet-Lite0 (an imported ONNX model, ReLU6
# and depthwise convolutions): 8-bit weights asymmetric or symmetric, per tensor or per channel,
# 8-bit asymmetric per-tensor activations, BN folded, minmax ranges from 256 sample images.
# docs/ptq.md discusses the table.
#
# Run:  qsh examples/efficientnet-lite0-ptq.qs
#   (efficientnet-lite0.onnx in the models directory, imagenet-sample/ in the data directory;
#   about 2 minutes on 2 cores). The sample has one image per class, so each image is 0.1 point;
#   calibration draws its 256 images from the same 1,000 (there is no other ImageNet data here).

load lite0 from "efficientnet-lite0.onnx" mean=0.498039 std=0.501961
eval imagefolder "imagenet-sample" batch=50
expect top1 == 87.1 +- 0.05
fold bn
snapshot folded

for scheme in asymmetric, symmetric {
  for granularity in tensor, channel {
    restore folded
    quantize weights bits=8 scheme=$scheme granularity=$granularity
    eval imagefolder "imagenet-sample" batch=50
    quantize activations bits=8 scheme=asymmetric granularity=tensor
    calibrate data="imagefolder:imagenet-sample" samples=256
    eval imagefolder "imagenet-sample" batch=50
  }
}
results
