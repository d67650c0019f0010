# Data-free ternary/6-bit (MP2/6) ResNets: the DF-MPC pairing, with the batch-norm statistics
# re-estimated on images distilled from the float model itself, not on real images.
#
# Run:  qsh examples/datafree-mp26.qs        (15 to 20 minutes per model on 2 busy cores, measured
#       with the first gradient tape; the current one distills faster: docs/reproduction.md)
# Models and data are found through --models/--data, $QSH_MODELS/$QSH_DATA or the user cache.
# Only the test set is read, to measure; no training image is used. docs/reproduction.md
# compares these rows with the float model, the paper's recipe and real-data re-estimation.
#
# The distilled images depend on the seed, and on the machine and thread count through float
# rounding, so the data-free rows carry a tolerance.

# --- ResNet-20 (akamaster), float 91.73 ---
load resnet20
distill samples=256 steps=200 lr=0.2 batch=64 seed=0
mixed dfmpc low=ternary high=6
snapshot mp26
recalibrate bn data=distilled samples=256
eval cifar10
expect top1 == 80.91 +- 1.5      # measured 80.91; real images (256): 80.00

restore mp26
compensate dfmpc
recalibrate bn data=distilled samples=256
eval cifar10
expect top1 == 80.87 +- 1.5      # measured 80.87; real images (256): 80.24

# --- ResNet-56 (Neuron Merging), float 93.88; the DF-MPC paper reports 91.05 for MP2/6 ---
load nm-resnet56
distill samples=128 steps=200 lr=0.2 batch=64 seed=1
mixed dfmpc low=ternary high=6
snapshot mp26
recalibrate bn data=distilled samples=128
eval cifar10
expect top1 == 87.27 +- 1.5      # measured 87.27; real images: 86.06 (256), 85.90 (1024)

restore mp26
compensate dfmpc
recalibrate bn data=distilled samples=128
eval cifar10
expect top1 == 87.16 +- 1.5      # measured 87.16; real images (256): 86.46

results
