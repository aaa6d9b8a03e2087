"""Typed messages of the four SecAgg phases, as JSON (binary fields in base64).

Devices are known to each other only by their index 1..n in the round's roster (the
x-coordinate of their Shamir shares), never by their device id.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from protocol.errors import ProtocolError
from protocol.fields import get_field
from protocol.secagg.shamir import SHARE_BYTES

SELF_MASK = "self_mask"  # a share of b_v, revealed for a device that sent its masked input
MASK_KEY = "mask_key"  # a share of s_v^SK, revealed for a device that dropped after sharing
MAX_INDEX = 1 << 20


def round_context(task_id: str, round_num: int) -> bytes:
    """Binds every derived key and sealed share to one round of one task."""
    return f"{task_id}|{round_num}".encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(raw: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(raw, str):
        raise ProtocolError(f"field '{name}' must be base64 text", "bad_request")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"field '{name}' is not valid base64", "bad_request") from exc
    if size is not None and len(data) != size:
        raise ProtocolError(f"field '{name}' must be {size} bytes", "bad_request")
    return data


def _index(raw: dict, name: str) -> int:
    value = get_field(raw, name, int)
    if not 1 <= value <= MAX_INDEX:
        raise ProtocolError(f"field '{name}' must be a roster index in [1, {MAX_INDEX}]", "bad_request")
    return value


def _index_list(raw: dict, name: str) -> tuple[int, ...]:
    values = get_field(raw, name, list)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_INDEX for v in values):
        raise ProtocolError(f"field '{name}' must be a list of roster indices", "bad_request")
    if len(set(values)) != len(values):
        raise ProtocolError(f"field '{name}' has duplicates", "bad_request")
    return tuple(sorted(values))


@dataclass(frozen=True)
class SecAggParams:
    """Fixed when the key advertisement closes; every participant derives the same graph and grid."""

    n: int  # devices in the roster (those that advertised keys)
    degree: int  # neighbours per device: n - 1 for SecAgg, O(log n) for SecAgg+
    threshold: int  # shares needed to rebuild a secret, among its holders (the owner and its neighbours)
    quant_bits: int
    modulus_bits: int
    value_range: float
    num_values: int
    length: int  # padded to a power of two for the rotation
    rotation_seed: int
    graph_seed: bytes
    extra: int = 0  # integer slots after the update (the adaptive-clipping bit), summed unrotated
    # Distributed DP (protocol.secagg.distributed_dp): each device's N_Z noise variance and its
    # conditional-rounding bound, in grid units; 0: no device noise (plain SecAgg codes).
    dp_variance: float = 0.0
    dp_bound: float = 0.0
    # Sparse (the codec's +sparse:F): only these many of the L rotated codes are masked, the
    # subset protocol.sparse draws from rotation_seed (every device keeps the same ones, so
    # the masked sums line up); 0: all L.
    kept: int = 0
    # Distributed DP with adaptive clipping: each device's N_Z noise variance on its clip bit
    # (the extra slot), so the count the clip follows is noised before anyone unmasks it.
    dp_count_variance: float = 0.0

    @property
    def distributed_dp(self) -> bool:
        return self.dp_variance > 0

    @property
    def coded_length(self) -> int:
        """The update's codes that travel: the kept ones, or all L."""
        return self.kept or self.length

    @property
    def vector_length(self) -> int:
        return self.coded_length + self.extra

    def to_dict(self) -> dict:
        return {"n": self.n, "degree": self.degree, "threshold": self.threshold, "quant_bits": self.quant_bits,
                "modulus_bits": self.modulus_bits, "value_range": self.value_range, "num_values": self.num_values,
                "length": self.length, "rotation_seed": self.rotation_seed, "graph_seed": b64(self.graph_seed),
                "extra": self.extra, **({"dp_variance": self.dp_variance, "dp_bound": self.dp_bound}
                                        if self.distributed_dp else {}), **({"kept": self.kept} if self.kept else {}),
                **({"dp_count_variance": self.dp_count_variance} if self.dp_count_variance else {})}

    @classmethod
    def from_dict(cls, raw: Any) -> "SecAggParams":
        p = cls(n=get_field(raw, "n", int), degree=get_field(raw, "degree", int),
                threshold=get_field(raw, "threshold", int), quant_bits=get_field(raw, "quant_bits", int),
                modulus_bits=get_field(raw, "modulus_bits", int), value_range=get_field(raw, "value_range", float),
                num_values=get_field(raw, "num_values", int), length=get_field(raw, "length", int),
                rotation_seed=get_field(raw, "rotation_seed", int), graph_seed=unb64(raw.get("graph_seed"),
                                                                                     "graph_seed", 32),
                extra=get_field(raw, "extra", int, False, 0),
                dp_variance=get_field(raw, "dp_variance", float, False, 0.0, lo=0.0, hi=1e12),
                dp_bound=get_field(raw, "dp_bound", float, False, 0.0, lo=0.0, hi=1e12),
                kept=get_field(raw, "kept", int, False, 0, lo=0, hi=2**31),
                dp_count_variance=get_field(raw, "dp_count_variance", float, False, 0.0, lo=0.0, hi=1e12))
        if not (2 <= p.n <= MAX_INDEX and 1 <= p.degree < p.n and 1 <= p.threshold <= p.degree + 1
                and 1 <= p.quant_bits < p.modulus_bits <= 32 and p.value_range > 0
                and 1 <= p.num_values <= p.length and p.length & (p.length - 1) == 0 and 0 <= p.extra <= 16
                and (p.dp_variance == 0 or (p.dp_variance >= 1 and p.dp_variance == int(p.dp_variance)
                                            and p.dp_bound > 0 and p.extra <= 1))
                # Under distributed DP the clip bit travels only with its own noise (never a
                # noise-free count), and that noise only with distributed DP.
                and (p.dp_count_variance == 0) == (not (p.distributed_dp and p.extra))
                and (p.dp_count_variance == 0 or p.dp_count_variance == int(p.dp_count_variance))
                and p.kept <= p.length and not (p.kept and p.distributed_dp)):
            raise ProtocolError("inconsistent SecAgg parameters", "bad_params")
        return p


@dataclass(frozen=True)
class PublicKeys:
    c_public: bytes  # X25519, to encrypt shares
    s_public: bytes  # X25519, to agree mask seeds

    def to_dict(self) -> dict:
        return {"c_public": b64(self.c_public), "s_public": b64(self.s_public)}

    @classmethod
    def from_dict(cls, raw: Any) -> "PublicKeys":
        if not isinstance(raw, dict):
            raise ProtocolError("public keys must be a JSON object", "bad_request")
        return cls(unb64(raw.get("c_public"), "c_public", 32), unb64(raw.get("s_public"), "s_public", 32))


@dataclass(frozen=True)
class EncryptedShare:
    sender: int
    receiver: int
    ciphertext: bytes

    def to_dict(self) -> dict:
        return {"sender": self.sender, "receiver": self.receiver, "ciphertext": b64(self.ciphertext)}

    @classmethod
    def from_dict(cls, raw: Any) -> "EncryptedShare":
        data = unb64(get_field(raw, "ciphertext", str), "ciphertext")
        if len(data) > 1024:
            raise ProtocolError("ciphertext is too long", "bad_request")
        return cls(_index(raw, "sender"), _index(raw, "receiver"), data)


@dataclass(frozen=True)
class UnmaskRequest:
    survivors: tuple[int, ...]  # sent masked input: reveal their self-mask shares
    dropped: tuple[int, ...]  # shared keys but sent no masked input: reveal their mask-key shares

    def to_dict(self) -> dict:
        return {"survivors": list(self.survivors), "dropped": list(self.dropped)}

    @classmethod
    def from_dict(cls, raw: Any) -> "UnmaskRequest":
        return cls(_index_list(raw, "survivors"), _index_list(raw, "dropped"))


@dataclass(frozen=True)
class RevealedShare:
    owner: int
    kind: str  # SELF_MASK or MASK_KEY
    share: bytes

    def to_dict(self) -> dict:
        return {"owner": self.owner, "kind": self.kind, "share": b64(self.share)}

    @classmethod
    def from_dict(cls, raw: Any) -> "RevealedShare":
        kind = get_field(raw, "kind", str)
        if kind not in (SELF_MASK, MASK_KEY):
            raise ProtocolError(f"share kind must be {SELF_MASK} or {MASK_KEY}", "bad_request")
        return cls(_index(raw, "owner"), kind, unb64(get_field(raw, "share", str), "share", SHARE_BYTES))


def parse_list(raw: Any, name: str, item, limit: int = MAX_INDEX) -> list:
    items = get_field(raw, name, list)
    if len(items) > limit:
        raise ProtocolError(f"field '{name}' has too many items", "bad_request")
    return [item.from_dict(x) for x in items]


@dataclass(frozen=True)
class SecAggView:
    """What the coordinator tells one device about the round's SecAgg state (GET .../secagg)."""

    state: str
    my_index: int = 0
    params: SecAggParams | None = None
    keys: dict[int, PublicKeys] = field(default_factory=dict)  # the roster, once advertising closed
    sharers: tuple[int, ...] = ()  # who sent shares (U2), once sharing closed
    inbox: tuple[EncryptedShare, ...] = ()  # the shares addressed to this device
    unmask: UnmaskRequest | None = None
    reason: str = ""

    def to_dict(self) -> dict:
        out: dict = {"state": self.state, "my_index": self.my_index, "reason": self.reason}
        if self.params is not None:
            out["params"] = self.params.to_dict()
            out["keys"] = {str(i): k.to_dict() for i, k in self.keys.items()}
        if self.sharers:
            out["sharers"] = list(self.sharers)
            out["inbox"] = [s.to_dict() for s in self.inbox]
        if self.unmask is not None:
            out["unmask"] = self.unmask.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> "SecAggView":
        params = SecAggParams.from_dict(raw["params"]) if isinstance(raw, dict) and "params" in raw else None
        keys = {}
        if params is not None:
            keys_raw = get_field(raw, "keys", dict)
            try:
                keys = {int(i): PublicKeys.from_dict(k) for i, k in keys_raw.items()}
            except ValueError as exc:
                raise ProtocolError("roster keys must be indexed by integers", "bad_response") from exc
        sharers = _index_list(raw, "sharers") if "sharers" in raw else ()
        inbox = tuple(parse_list(raw, "inbox", EncryptedShare)) if sharers else ()
        unmask = UnmaskRequest.from_dict(raw["unmask"]) if raw.get("unmask") is not None else None
        return cls(get_field(raw, "state", str), get_field(raw, "my_index", int, False, 0), params, keys,
                   sharers, inbox, unmask, get_field(raw, "reason", str, False, ""))
