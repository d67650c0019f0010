# DF-MPC on CIFAR-10: the shape of the paper's Table 1, on our checkpoints.
#
# For each model: float; MP2/6 (in every basic block conv1 ternary, conv2 6-bit DoReFa; stem,
# shortcut convs and classifier float; activations float) without compensation; DF-MPC with the
# closed form of docs (methods.md section 3) for lambda1 = 0.1 ... 0.6, lambda2 = 0, BN kept as
# in the paper. After each of those, a row with BN statistics re-estimated on 2048 training images
# (`recalibrate bn`), which is not data-free but shows what the statistics alone recover.
#
# The paper reports ResNet-56: 93.88 -> 38.03 -> 91.05 (lambda1 = 0.5). The formulas as written
# give far less on these checkpoints; see docs/reproduction.md. Every number is on all 10,000 test
# images. Run: qsh examples/dfmpc-resnet56.qs (2 cores: 16 minutes at load average 2 to 6; 38 at
# load average 4 to 9, where each of the 16 evaluations of nm-resnet56 took about 75 s).
#
# The 2,048 training images are drawn by a seeded shuffle, so the "+ BN" rows repeat exactly; on
# one machine every number does, whatever the thread count. The +-0.05 (5 of 10,000 images) is for
# other CPUs, where oneDNN and OpenBLAS pick other kernels that add in another order.

let samples = 2048

# nm-resnet56
load nm-resnet56
eval cifar10
expect top1 == 93.88 +- 0.05
mixed dfmpc low=ternary high=6
snapshot mp26
eval cifar10
expect top1 == 18.25 +- 0.05          # MP2/6, no compensation
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 86.05 +- 0.05          # MP2/6, BN re-estimated
restore mp26
compensate dfmpc lambda1=0.1 lambda2=0
eval cifar10
expect top1 == 20.66 +- 0.05
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 86.55 +- 0.05
restore mp26
compensate dfmpc lambda1=0.2 lambda2=0
eval cifar10
expect top1 == 20.59 +- 0.05
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 86.51 +- 0.05
restore mp26
compensate dfmpc lambda1=0.3 lambda2=0
eval cifar10
expect top1 == 20.46 +- 0.05
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 86.48 +- 0.05
restore mp26
compensate dfmpc lambda1=0.4 lambda2=0
eval cifar10
expect top1 == 20.33 +- 0.05
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 86.46 +- 0.05
restore mp26
compensate dfmpc lambda1=0.5 lambda2=0
eval cifar10
expect top1 == 20.33 +- 0.05
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 86.46 +- 0.05
restore mp26
compensate dfmpc lambda1=0.6 lambda2=0
eval cifar10
expect top1 == 20.24 +- 0.05
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 86.42 +- 0.05

# resnet20
load resnet20
eval cifar10
expect top1 == 91.73 +- 0.05
mixed dfmpc low=ternary high=6
snapshot mp26
eval cifar10
expect top1 == 13.89 +- 0.05          # MP2/6, no compensation
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 79.89 +- 0.05          # MP2/6, BN re-estimated
restore mp26
compensate dfmpc lambda1=0.1 lambda2=0
eval cifar10
expect top1 == 14.72 +- 0.05
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 80.30 +- 0.05
restore mp26
compensate dfmpc lambda1=0.2 lambda2=0
eval cifar10
expect top1 == 14.55 +- 0.05
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 80.27 +- 0.05
restore mp26
compensate dfmpc lambda1=0.3 lambda2=0
eval cifar10
expect top1 == 14.49 +- 0.05
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 80.29 +- 0.05
restore mp26
compensate dfmpc lambda1=0.4 lambda2=0
eval cifar10
expect top1 == 14.29 +- 0.05
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 80.38 +- 0.05
restore mp26
compensate dfmpc lambda1=0.5 lambda2=0
eval cifar10
expect top1 == 14.19 +- 0.05
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 80.32 +- 0.05
restore mp26
compensate dfmpc lambda1=0.6 lambda2=0
eval cifar10
expect top1 == 14.16 +- 0.05
recalibrate bn data=cifar10-train samples=$samples
eval cifar10
expect top1 == 80.34 +- 0.05

results
