# AIT on CIFAR-10 ResNet-20, W4A4, without real data: the AIT paper's ablation (its Table 2) on
# our model. One W4A4 student and four rows; the fine-tuning rows train for the same number of
# epochs on the same images (the same CPU budget, to within the kappa search):
#   no fine-tuning | KL + CE | KL only | KL only + gradient inundation (AIT)
#
# Run:  qsh examples/ait-w4a4.qs      (about 35 to 45 minutes on 2 cores: six distillations of
#       512 images, 2 to 4 minutes each, and three fine-tuning rows of about 7 minutes; docs/ait.md
#       has the table and the timings)
# Models and data are found through --models/--data, $QSH_MODELS/$QSH_DATA or the user cache.
# Every training image is distilled from the float model; the test set is read only to measure
# each row at the end.
#
# Distilled images depend on the seed, and on the machine and thread count through float
# rounding, so the rows carry tolerances.

let rounds = 1, 3..6                # seeds of the training sets; seed 2 is held out
let epochs_per_round = 24

load resnet20
# Fresh data, as a generator would give: five sets of 512 distilled images, one per round of
# fine-tuning, and a held-out set that chooses the epoch each row keeps.
distill samples=512 steps=100 lr=0.2 batch=64 seed=2 name=heldout
for s in $rounds {
    distill samples=512 steps=100 lr=0.2 batch=64 seed=$s name="train$s"
}

# The W4A4 student: 4-bit asymmetric per-channel weights on every layer (first and last too),
# 4-bit activations calibrated on distilled images; batch norms stay unfolded, as in GDFQ.
quantize weights bits=4 scheme=asymmetric granularity=channel
quantize activations bits=4
calibrate data=train1 samples=512 method=percentile
snapshot w4a4
eval cifar10
expect top1 == 83.2 +- 2         # no fine-tuning

# KL + CE (GDFQ-like: the teacher's argmax as labels, both terms with weight 1; docs/ait.md)
finetune ait data=train1 validate=heldout epochs=$epochs_per_round lr=1e-4 momentum=0.9 batch=64 seed=0 loss=kl+ce inundation=false
for s in 3..6 {
    finetune ait data="train$s" validate=heldout resume=true epochs=$epochs_per_round lr=1e-4 momentum=0.9 batch=64 seed=0 loss=kl+ce inundation=false
}
eval cifar10
expect top1 > 85

# KL only
restore w4a4
finetune ait data=train1 validate=heldout epochs=$epochs_per_round lr=1e-4 momentum=0.9 batch=64 seed=0 loss=kl inundation=false
for s in 3..6 {
    finetune ait data="train$s" validate=heldout resume=true epochs=$epochs_per_round lr=1e-4 momentum=0.9 batch=64 seed=0 loss=kl inundation=false
}
eval cifar10
expect top1 > 85
plot updates to "ait-updates-kl.svg"

# KL only + gradient inundation (AIT)
restore w4a4
finetune ait data=train1 validate=heldout epochs=$epochs_per_round lr=1e-4 momentum=0.9 batch=64 seed=0 loss=kl inundation=true rho=1e-3
for s in 3..6 {
    finetune ait data="train$s" validate=heldout resume=true epochs=$epochs_per_round lr=1e-4 momentum=0.9 batch=64 seed=0 loss=kl inundation=true rho=1e-3
}
eval cifar10
expect top1 > 85
plot updates to "ait-updates-ait.svg"
results
