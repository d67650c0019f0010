# Quick start: measure a pretrained ResNet-20, then quantize and compensate it.
#
# Run:  qsh examples/quickstart.qs   (59 s on 2 cores busy with other work, load average 7: two
#       evaluations of the full test set, 29 s each)
# Models and data are found through --models/--data, $QSH_MODELS/$QSH_DATA or the user cache.

load resnet20
eval cifar10
expect top1 == 91.73 +- 0.02        # PyTorch measures 91.73 on the full test set

# Ternary weights from layer 3 on, the classifier (layer 20) included, compensated by DF-MPC's
# closed-form per-channel coefficients. This is not the DF-MPC paper's setting: its MP2/6 pairs a
# ternary conv with a 6-bit one in each block and keeps the classifier float (`mixed dfmpc`, see
# examples/dfmpc-resnet56.qs, where the paper reports 91.05 on nm-resnet56). Here the accuracy
# falls to about chance (10.41 measured).
fold bn
ternary layer 3..
compensate dfmpc lambda=0.4
eval cifar10
layers
results
