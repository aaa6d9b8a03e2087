"""The device's side of SecAgg: a state machine over the four phases, with the safety checks.

Phase by phase (Bonawitz et al. 2017, Fig. 4, honest-but-curious server; no signatures):

0. AdvertiseKeys   send two fresh X25519 public keys (c_pk, s_pk).
1. ShareKeys       given the roster (n, the graph, everyone's public keys): draw the
                   self-mask seed b; Shamir-share s_sk and b among the neighbours and
                   itself with threshold t (as in the paper, the owner holds a share of
                   its own secrets, so a survivor's own b-share counts toward t); seal
                   each neighbour's pair of shares with a key agreed from c_sk and the
                   neighbour's c_pk.
2. MaskedInput     given who shared (U2) and the sealed shares addressed to it: keep the
                   shares; upload y = x + PRG(b) + sum over neighbours v in U2 of
                   +-PRG(KA(s_sk, s_pk_v)) mod 2^k (+ when my index < v's).
3. Unmasking       given survivors (sent y) and dropped (shared, sent no y): reveal the
                   b-share of each surviving neighbour and the s_sk-share of each dropped
                   neighbour, never both for the same device, and answer one request only.
"""

from __future__ import annotations

import os
import struct
from typing import Sequence

import numpy as np

from protocol.errors import ProtocolError
from protocol.secagg import crypto, graph, prg, shamir
from protocol.secagg.messages import (MASK_KEY, SELF_MASK, EncryptedShare, PublicKeys, RevealedShare,
                                      SecAggParams, UnmaskRequest)

_PAIR = struct.Struct(">II")


class UnsafeRequest(ProtocolError):
    """The coordinator asked for something that would expose an individual update."""

    def __init__(self, message: str):
        super().__init__(message, "unsafe_request")


def share_aad(context: bytes, sender: int, receiver: int) -> bytes:
    return context + _PAIR.pack(sender, receiver)


def pairwise_sign(me: int, other: int) -> int:
    return 1 if me < other else -1


class SecAggClient:
    def __init__(self, context: bytes):
        self.context = context
        self.c = crypto.generate_keypair()
        self.s = crypto.generate_keypair()
        self.index = 0
        self.params: SecAggParams | None = None
        self.keys: dict[int, PublicKeys] = {}
        self.neighbours: frozenset[int] = frozenset()
        self.sharers: frozenset[int] = frozenset()
        self._b: bytes = b""
        self._held: dict[int, tuple[int, int]] = {}  # owner -> (share of s_sk, share of b)
        self._own: tuple[int, int] = (0, 0)  # my shares of my own secrets
        self._answered: UnmaskRequest | None = None

    def public_keys(self) -> PublicKeys:
        return PublicKeys(self.c.public, self.s.public)

    # -- phase 1 ---------------------------------------------------------------------
    def share_keys(self, my_index: int, params: SecAggParams, keys: dict[int, PublicKeys]) -> list[EncryptedShare]:
        if set(keys) != set(range(1, params.n + 1)) or keys.get(my_index) != self.public_keys():
            raise UnsafeRequest("the roster does not list my keys under my index, or is not indices 1..n")
        publics = [k.c_public for k in keys.values()] + [k.s_public for k in keys.values()]
        if len(set(publics)) != len(publics):
            raise UnsafeRequest("the roster repeats a public key")
        self.index, self.params, self.keys = my_index, params, keys
        self.neighbours = graph.neighbours(params.n, params.degree, params.graph_seed)[my_index]
        if len(self.neighbours) + 1 < params.threshold:
            raise UnsafeRequest(f"threshold {params.threshold} is above my {len(self.neighbours)} neighbours and me")
        self._b = os.urandom(shamir.SECRET_BYTES)
        xs = sorted(self.neighbours | {my_index})
        s_shares = shamir.split(self.s.private, xs, params.threshold)
        b_shares = shamir.split(self._b, xs, params.threshold)
        self._own = (s_shares[my_index], b_shares[my_index])
        out = []
        for v in sorted(self.neighbours):
            key = crypto.agree(self.c.private, keys[v].c_public, self.context, crypto.PURPOSE_SHARES)
            plain = _PAIR.pack(my_index, v) + shamir.share_to_bytes(s_shares[v]) + shamir.share_to_bytes(b_shares[v])
            out.append(EncryptedShare(my_index, v, crypto.seal(key, plain, share_aad(self.context, my_index, v))))
        return out

    # -- phase 2 ---------------------------------------------------------------------
    def receive_shares(self, sharers: Sequence[int], inbox: Sequence[EncryptedShare]) -> None:
        """Open and keep the shares sent to me by the neighbours that shared keys (U2)."""
        p = self._require_params()
        u2 = frozenset(sharers)
        if self.index not in u2 or not u2 <= set(self.keys):
            raise UnsafeRequest("the list of devices that shared keys must include me and only roster members")
        peers = self.neighbours & u2
        if len(peers) + 1 < p.threshold:
            raise UnsafeRequest(f"only {len(peers)} of my neighbours shared keys; threshold is {p.threshold}")
        senders = [s.sender for s in inbox]
        if sorted(senders) != sorted(peers) or any(s.receiver != self.index for s in inbox):
            raise ProtocolError("the inbox must hold exactly one share from each neighbour that shared keys",
                                "bad_inbox")
        held = {self.index: self._own}
        for item in inbox:
            key = crypto.agree(self.c.private, self.keys[item.sender].c_public, self.context, crypto.PURPOSE_SHARES)
            plain = crypto.open_sealed(key, item.ciphertext, share_aad(self.context, item.sender, self.index))
            if len(plain) != _PAIR.size + 2 * shamir.SHARE_BYTES or _PAIR.unpack_from(plain) != (item.sender,
                                                                                              self.index):
                raise ProtocolError(f"share from {item.sender} is malformed", "bad_share")
            body = plain[_PAIR.size:]
            held[item.sender] = (shamir.share_from_bytes(body[: shamir.SHARE_BYTES]),
                                 shamir.share_from_bytes(body[shamir.SHARE_BYTES:]))
        self._held, self.sharers = held, u2

    def mask(self, codes: np.ndarray) -> np.ndarray:
        """y = x + PRG(b) + sum over neighbours v in U2 of sign(me, v) PRG(s_uv), mod 2^k."""
        p = self._require_params()
        if not self.sharers:
            raise ProtocolError("SecAgg phases out of order: no shares received yet", "out_of_order")
        codes = np.asarray(codes)
        # Distributed DP's codes are noised and signed, reduced mod 2^k: the whole ring.
        bits = p.modulus_bits if p.distributed_dp else p.quant_bits
        if codes.shape != (p.vector_length,) or (codes.size and int(codes.max()) >> bits):
            raise ProtocolError(f"masked input needs {p.vector_length} codes below 2^{bits}", "bad_input")
        total = codes.astype(np.uint64) + prg.expand(self._b, p.vector_length, p.modulus_bits)
        for v in sorted(self.neighbours & self.sharers):
            seed = crypto.agree(self.s.private, self.keys[v].s_public, self.context, crypto.PURPOSE_MASK)
            mask = prg.expand(seed, p.vector_length, p.modulus_bits).astype(np.uint64)
            total = total + mask if pairwise_sign(self.index, v) > 0 else total - mask
        return (total & np.uint64((1 << p.modulus_bits) - 1)).astype(np.uint32)

    def masked_input(self, codes: np.ndarray, sharers: Sequence[int], inbox: Sequence[EncryptedShare]) -> np.ndarray:
        self.receive_shares(sharers, inbox)
        return self.mask(codes)

    # -- phase 3 ---------------------------------------------------------------------
    def unmask(self, request: UnmaskRequest) -> list[RevealedShare]:
        p = self._require_params()
        if self._answered is not None and request != self._answered:
            raise UnsafeRequest("already answered a different unmasking request this round")
        survivors, dropped = set(request.survivors), set(request.dropped)
        both = survivors & dropped
        if both:
            raise UnsafeRequest(f"asked for both the self-mask and the mask-key shares of {sorted(both)[:5]}; "
                                "revealing both would expose their update")
        if not self.sharers or not (survivors | dropped) <= self.sharers or self.index not in survivors:
            raise UnsafeRequest("survivors and dropped must be devices that shared keys, with me a survivor")
        if len((survivors - {self.index}) & self.neighbours) + 1 < p.threshold:
            raise UnsafeRequest(f"fewer than {p.threshold} survivors around me; the sum would cover too few inputs")
        out = []
        for owner, (s_share, b_share) in sorted(self._held.items()):
            if owner in survivors:
                out.append(RevealedShare(owner, SELF_MASK, shamir.share_to_bytes(b_share)))
            elif owner in dropped:
                out.append(RevealedShare(owner, MASK_KEY, shamir.share_to_bytes(s_share)))
        self._answered = request
        return out

    def _require_params(self) -> SecAggParams:
        if self.params is None:
            raise ProtocolError("SecAgg phases out of order: no roster yet", "out_of_order")
        return self.params
