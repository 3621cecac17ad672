// keyline-bench: throughput figures for the README and closing notes. Run with `make bench`.
print("keyline-bench")
