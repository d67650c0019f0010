# Sweep DF-MPC's lambda1 on ResNet-20 under the paper's MP2/6 pairing, and draw the curve.
#
# Each point is measured on every 10th test image (1,000 images, all classes), which is enough
# to see the trend in a few seconds. Override the list from the command line, e.g.
#   qsh examples/lambda-sweep.qs --set stride=1
let stride = 10

load resnet20
mixed dfmpc low=ternary high=6
snapshot mp26
eval cifar10 stride=$stride
expect top1 == 12.5 +- 0.2         # MP2/6 without compensation

for lam in 0.1, 0.2, 0.3, 0.4, 0.5, 0.6 {
    restore mp26
    compensate dfmpc lambda1=$lam lambda2=0
    eval cifar10 stride=$stride
    expect top1 >= 12              # the literal closed form adds about one point at most
}
results
plot results to "lambda-sweep.svg"
