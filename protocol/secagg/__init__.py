"""Secure aggregation (Bonawitz et al. 2017, CCS; SecAgg+ of Bell et al. 2020): the pure parts.

Modules, one concept each:

- `shamir`   t-out-of-n secret sharing over the prime field GF(2^521 - 1).
- `crypto`   X25519 key agreement, HKDF-SHA256 key derivation, ChaCha20-Poly1305 sealing
             (all from the `cryptography` package).
- `prg`      mask expansion: the ChaCha20 key stream of a 32-byte seed, read as integers mod 2^k.
- `graph`    who shares keys and masks with whom: everyone (SecAgg) or the neighbours on a
             random Harary graph of degree O(log n) (SecAgg+).
- `ring`     the quantized update as a vector of integers mod 2^k (fixed grid shared by all
             devices, so the integer sum dequantizes to the sum of the updates).
- `messages` the typed messages of the four phases.
- `client`   the device's side of the protocol, a state machine with the safety checks.
- `server`   the coordinator's unmasking: rebuild the secrets of the round from the revealed
             shares and strip the masks from the sum.
"""
