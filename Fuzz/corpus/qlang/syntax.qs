let a = 1
let s = "x\ty\u{41}$a ${a}"
for b in 2..4, 8 { quantize weights bits=$b layer 1.. }
expect top1 >= 90 +- 0.5
print $a \
  -2.5e-3 true ..3 ; layers
# comment
eval cifar10 samples=100
