# Quick start: measure a pretrained ResNet-20, then quantize and compensate it.
#
# Run:  qsh examples/quickstart.qs
# Models and data are found through --models/--data, $QSH_MODELS/$QSH_DATA or the user cache.

load resnet20
eval cifar10
expect top1 == 91.73 +- 0.02        # PyTorch measures 91.73 on the full test set

# The recipe from the DF-MPC paper, as written: fold BN, ternarize every layer from 3 on,
# and compensate with the closed-form per-channel coefficients.
fold bn
ternary layer 3..
compensate dfmpc lambda=0.4
eval cifar10
layers
results
