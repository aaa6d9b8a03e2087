"""Secure aggregation cost: client time, server time and bytes per device.

For each n (devices), d (vector length), protocol (SecAgg: all pairs; SecAgg+: Harary
graph of degree ~3 log2 n) and dropout (the fraction that vanishes after sharing keys and
before sending its masked input, the costly case: the server must rebuild their mask keys
and strip their pairwise masks), runs the whole protocol in one process
(protocol.secagg.simulation) and prints:

  client s   one device's compute over its phases (share keys + mask), mean of the timed devices
  server s   unmasking: rebuilding secrets from shares and stripping every mask from the sum
  KiB/dev    bytes a device sends over all phases (keys, sealed shares, masked input, reveals)
  expansion  those bytes / (d x 2 bytes), the measure of Bonawitz et al. 2017 for 16-bit inputs
             (their abstract: 1.73x for 2^10 users and 2^20 entries, 1.98x for 2^14 users, 2^24)

The goal from issue 5: n=100, d=100k, 10% dropout -> client < 1 s and server < 5 s.
Large cells time only a few devices for real (see simulation.simulate(timed_clients=...)).

    python bench/secagg_bench.py                         # the full grid (several minutes)
    python bench/secagg_bench.py --n 100 --d 100000      # the goal cell
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol.secagg.simulation import simulate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[50, 100, 200, 500])
    ap.add_argument("--d", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dropout", type=float, nargs="+", default=[0.0, 0.1])
    ap.add_argument("--protocol", nargs="+", default=["secagg", "secagg+"], choices=["secagg", "secagg+"])
    ap.add_argument("--timed-clients", type=int, default=5, help="devices that mask for real in each cell")
    ap.add_argument("--distributed-dp", type=float, default=0.0, metavar="Z",
                    help="distributed DP with noise multiplier Z: devices encode a real update with its noise "
                         "(timed as 'encode'; noise calibrated for n/2 survivors)")
    ap.add_argument("--sparse", type=float, default=0.0, metavar="F",
                    help="mask only a round-shared fraction F of the rotated codes (the codec's +sparse:F)")
    ap.add_argument("--max-server-work", type=float, default=2e9,
                    help="skip cells whose unmasking expands more mask entries than this")
    args = ap.parse_args()
    print(f"{'protocol':8} {'n':>4} {'d':>9} {'drop':>5} {'deg':>4} {'t':>4} {'client s':>9} {'server s':>9} "
          f"{'KiB/dev':>9} {'expansion':>9} {'k':>3} {'encode s':>8}  check"
          + (f"   (distributed DP, z = {args.distributed_dp:g})" if args.distributed_dp else "")
          + (f"   (sparse: {args.sparse:g} of the codes)" if args.sparse else ""))
    for proto in args.protocol:
        for n in args.n:
            for d in args.d:
                for drop in args.dropout:
                    plus = proto == "secagg+"
                    degree = n - 1 if not plus else min(n - 1, 2 * int(1.5 * n.bit_length()))
                    dropped = int(drop * n)
                    work = (n - dropped + dropped * degree) * d * (args.sparse or 1.0)
                    if work > args.max_server_work:
                        print(f"{proto:8} {n:>4} {d:>9} {drop:>5.0%}  skipped: ~{work:.1e} mask entries to expand "
                              f"(raise --max-server-work)")
                        continue
                    t0 = time.perf_counter()
                    r = simulate(n, d, drop={"masked_input": drop}, plus=plus, timed_clients=args.timed_clients,
                                 seed=n + d, dp_noise_multiplier=args.distributed_dp, sparse_fraction=args.sparse)
                    client = r.client_s["share"] + r.client_s["masked_input"] + r.client_s["unmask"]
                    sent = sum(r.bytes_up.values())
                    check = "exact" if r.verified and r.unmasked is not None and (r.unmasked == r.expected).all() \
                        else ("timing" if not r.failure else f"FAILED {r.failure}")
                    print(f"{proto:8} {n:>4} {d:>9} {drop:>5.0%} {r.params.degree:>4} {r.params.threshold:>4} "
                          f"{client:>9.3f} {r.server_s:>9.3f} {sent / 1024:>9.1f} {sent / (2 * d):>8.2f}x "
                          f"{r.params.modulus_bits:>3} {r.client_s['encode']:>8.3f}  {check}"
                          f"   ({time.perf_counter() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
