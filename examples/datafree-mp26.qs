# Data-free ternary/6-bit (MP2/6) ResNets: the DF-MPC pairing, with the batch-norm statistics
# re-estimated on images distilled from the float model itself, not on real images.
#
# Run:  qsh examples/datafree-mp26.qs        (about 15 minutes for ResNet-20 and 30 for ResNet-56 on 2 cores)
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
expect top1 == 80.91 +- 1.5      # measured 80.91; real images (256): 78.87

restore mp26
compensate dfmpc
recalibrate bn data=distilled samples=256
eval cifar10
expect top1 == 80.87 +- 1.5      # measured 80.87; real images (256): 79.09

# --- ResNet-56 (Neuron Merging), float 93.88; the DF-MPC paper reports 91.05 for MP2/6 ---
load nm-resnet56
distill samples=256 steps=100 lr=0.2 batch=64 seed=0
mixed dfmpc low=ternary high=6
snapshot mp26
recalibrate bn data=distilled samples=256
eval cifar10
expect top1 == 85.84 +- 1.5      # measured 85.84; real images (256): 85.43

restore mp26
compensate dfmpc
recalibrate bn data=distilled samples=256
eval cifar10
expect top1 == 85.58 +- 1.5      # measured 85.58; real images (256): 86.15

results
