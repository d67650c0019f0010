# Sweep DF-MPC's lambda1 on ResNet-20 under the paper's MP2/6 pairing, and draw the curve.
#
# Each point is measured on every 10th test image (1,000 images), which is enough to see the
# trend: 7 s on 2 cores at load average 1.5. Measured: MP2/6 13.8, with DF-MPC 13.9 to 14.2. For
# the full test set (13.89, then 14.16 to 14.72: examples/dfmpc-resnet56.qs), override the stride:
#   qsh examples/lambda-sweep.qs --set stride=1
let stride = 10

load resnet20
mixed dfmpc low=ternary high=6
snapshot mp26
eval cifar10 stride=$stride
expect top1 == 13.8 +- 0.1         # MP2/6 without compensation (+-0.1, one image: float sums differ by CPU)

for lam in 0.1, 0.2, 0.3, 0.4, 0.5, 0.6 {
    restore mp26
    compensate dfmpc lambda1=$lam lambda2=0
    eval cifar10 stride=$stride
    expect top1 >= 13.8            # the literal closed form does not lose: it adds 0.1 to 0.4 points here
}
results
plot results to "lambda-sweep.svg"
