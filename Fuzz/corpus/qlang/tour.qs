# The README's 30-second tour: load a pretrained ResNet-20, measure it, ternarize it from layer 3
# on (the classifier included), compensate with DF-MPC, and measure again.
#
# Run:  qsh examples/tour.qs        (59 s on 2 cores busy with other work, load average 7: two
#       evaluations of the full test set, 29 s each)
# Models and data are found through --models/--data, $QSH_MODELS/$QSH_DATA or the user cache.

load resnet20                 # akamaster ResNet-20 for CIFAR-10
eval cifar10                  # top-1 on the 10,000 test images
fold bn                       # exact: the logits do not change
ternary layer 3..             # TWN ternary weights from layer 3 on, the classifier included
compensate dfmpc lambda=0.4   # closed-form, data-free compensation (DF-MPC)
eval cifar10
expect top1 >= 10             # recipes check themselves
results                       # every eval of the session as a table
