for i in 0..1000000000 {
    print $i
}
