"""Benchmarks for taskrpc: `python -m bench` runs them all and prints one row per target.

Every figure is paired with a baseline measured in the same run, because absolute
times on a shared 2-core machine are noise; the ratio is what the targets are about.
The server under test and the baseline run as their own processes, and HTTP load
comes from a third process (`bench.load`) over loopback.
"""
