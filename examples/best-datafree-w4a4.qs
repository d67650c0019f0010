# The best data-free ResNet-20 W4A4 (4-bit weights per channel and 4-bit activations on every
# layer, the AIT paper's setting): docs/ait.md ("Data-free levers: measured"), as one recipe whose
# seeds are variables, so that the row's mean and spread over seeds can be measured:
#
#   qsh --threads 1 examples/best-datafree-w4a4.qs                                 # seeds 1..6
#   qsh --threads 1 --set heldout_seed=12 --set first_seed=11 --set more_seeds=13..16 examples/best-datafree-w4a4.qs
#   qsh --threads 1 --set heldout_seed=22 --set first_seed=21 --set more_seeds=23..26 examples/best-datafree-w4a4.qs
#
# Fresh images for every round of fine-tuning, as a generator would give them: five sets of 512
# images distilled from the float model, and one held-out set that chooses the kept epoch.
# About 19 CPU minutes each: about 2 per distilled set (six), the rest fine-tuning and two evaluations.
# Models and data are found through --models/--data, $QSH_MODELS/$QSH_DATA or the user cache.
# No real image changes the model; the test set is read only to measure.

let heldout_seed = 2     # the held-out images
let first_seed = 1       # the first round's images, also those that calibrate the activations
let more_seeds = 3..6    # one fresh set of images per further round
let epochs_per_round = 24
let clip = mse           # weight ranges: mse (the least squared error per channel), or minmax
let ranges = fixed       # activation ranges: fixed as calibrated, or learned with the weights (LSQ)

load resnet20
distill samples=512 steps=100 lr=0.2 batch=64 seed=$heldout_seed name=heldout
distill samples=512 steps=100 lr=0.2 batch=64 seed=$first_seed name=train

quantize weights bits=4 scheme=asymmetric granularity=channel clip=$clip
quantize activations bits=4
calibrate data=train samples=512 method=percentile
eval cifar10
expect top1 == 84.8 +- 2         # no fine-tuning (83.3 with clip=minmax)

finetune ait data=train validate=heldout epochs=$epochs_per_round lr=1e-3 momentum=0.9 batch=64 seed=$first_seed loss=kl inundation=false ranges=$ranges
for s in $more_seeds {
    distill samples=512 steps=100 lr=0.2 batch=64 seed=$s name=train from=float
    finetune ait data=train validate=heldout resume=true epochs=$epochs_per_round lr=1e-3 momentum=0.9 batch=64 seed=$s loss=kl inundation=false ranges=$ranges
}
eval cifar10
expect top1 == 88.8 +- 1.5       # float 91.73; the AIT paper's drop would be 88.70
