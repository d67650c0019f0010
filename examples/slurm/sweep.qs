# A sharded lambda1 sweep: DF-MPC on ResNet-20 under MP4/6, one work item per lambda.
#
# Each iteration of `sweep` starts from the model as it stands before the sweep, so the items are
# independent and `--shard i/N` can run them on different machines:
#   qsh examples/slurm/sweep.qs --shard 0/4 --json shards/shard-0.json    # ... and 1/4, 2/4, 3/4
#   qsh merge shards/*.json
# or all at once on Slurm: see examples/slurm/sweep.sbatch and docs/cluster.md.
#
# Every 20th test image (500 images, all classes) keeps each item to about a second.
let stride = 20

load resnet20
mixed dfmpc low=4 high=6
# Outside the sweep, so every shard runs it: with shard=auto each shard measures only its quarter
# of the images, and 'qsh merge' adds the four parts up exactly.
eval cifar10 stride=$stride shard=auto

sweep lam in 0.5, 1, 2, 5 {
    compensate dfmpc lambda1=$lam lambda2=0
    eval cifar10 stride=$stride
    expect top1 >= 85
}
