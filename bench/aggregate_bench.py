"""Time and peak memory to decode and fold N 8-bit updates of D float parameters into
the coordinator's running sum (the streaming aggregation of every upload).

    python bench/aggregate_bench.py [--updates 1000] [--params 1000000]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from coordinator.aggregation.reducers import WeightedSum
from protocol import codec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--codec", default="q8")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    spec = codec.CodecSpec.parse(args.codec)
    # A handful of distinct payloads, reused: encoding is the devices' cost, not the coordinator's.
    payloads = [codec.encode([rng.normal(size=args.params).astype(np.float32) * 0.01], spec, rng) for _ in range(8)]
    tracemalloc.start()
    acc = WeightedSum(args.params)
    start = time.perf_counter()
    for i in range(args.updates):
        decoded = codec.decode(payloads[i % len(payloads)], [args.params])
        acc.fold(decoded.values, 10.0)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    mean = acc.mean()
    print(f"{args.updates} updates x {args.params:,} params ({args.codec}, {len(payloads[0]) / 1e6:.2f} MB each)")
    print(f"fold time {elapsed:.2f} s total, {elapsed / args.updates * 1e3:.2f} ms per update")
    print(f"peak traced memory {peak / 2**20:.1f} MiB (model float32 = {args.params * 4 / 2**20:.1f} MiB; "
          f"all updates would be {args.updates * args.params * 4 / 2**30:.1f} GiB)")
    print(f"check: mean |aggregate| = {np.abs(mean).mean():.5f}")


if __name__ == "__main__":
    main()
