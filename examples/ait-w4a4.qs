# AIT on CIFAR-10 ResNet-20, W4A4, without real data: the AIT paper's ablation (its Table 2) on
# our model. One W4A4 student, four rows, each fine-tuning row with the same number of epochs
# on the same images (the same CPU budget, to within the kappa search):
#   no fine-tuning | KL + CE | KL only | KL only + gradient inundation (AIT)
#
# Run:  qsh examples/ait-w4a4.qs      (about 40 minutes on 2 busy cores; docs/ait.md has the table)
# Models and data are found through --models/--data, $QSH_MODELS/$QSH_DATA or the user cache.
# Training and held-out images are distilled from the float model; the test set is read only to
# measure each row at the end.
#
# Distilled images depend on the seed, and on the machine and thread count through float
# rounding, so the rows carry tolerances.

let epochs = 40

load resnet20
distill samples=512 steps=100 lr=0.2 batch=64 seed=1
distill samples=512 steps=100 lr=0.2 batch=64 seed=2 name=heldout

# The W4A4 student: 4-bit asymmetric per-channel weights on every layer (first and last too),
# 4-bit activations calibrated on the distilled images; batch norms stay unfolded, as in GDFQ.
quantize weights bits=4 scheme=asymmetric granularity=channel
quantize activations bits=4
calibrate data=distilled samples=512 method=percentile
snapshot w4a4
eval cifar10
expect top1 == 83.2 +- 2         # no fine-tuning

# Each row keeps the epoch with the lowest KL on the held-out synthetic images.
finetune ait data=distilled validate=heldout epochs=$epochs lr=1e-4 momentum=0.9 batch=64 seed=0 loss=kl+ce inundation=false
eval cifar10
expect top1 > 83                 # KL + CE (GDFQ's loss)

restore w4a4
finetune ait data=distilled validate=heldout epochs=$epochs lr=1e-4 momentum=0.9 batch=64 seed=0 loss=kl inundation=false
eval cifar10
expect top1 > 83                 # KL only
plot updates to "ait-updates-kl.svg"

restore w4a4
finetune ait data=distilled validate=heldout epochs=$epochs lr=1e-4 momentum=0.9 batch=64 seed=0 loss=kl inundation=true rho=1e-3
eval cifar10
expect top1 > 83                 # KL only + gradient inundation (AIT)
plot updates to "ait-updates-ait.svg"
results
