"""The coordinator's SecAgg phases, as states of the round in the same durable state machine.

    selecting -> advertising -> sharing -> reporting -> unmasking -> aggregating -> committed
                      (any phase short of its threshold)  -> failed (reason)

Each key phase (advertising, sharing, unmasking) gets ``secagg_phase_s`` from the moment
it starts, written with the transition; the reporting deadline is fixed when the round
opens (devices are told it with their assignment). A phase closes early once everyone it
waits for has answered (reporting: at the goal count, as in a plain round). Every
message is written to SQLite before it is acknowledged; the state a phase leaves behind
(roster, parameters, who shared, who survived) is written with the transition, so a
restarted coordinator continues the round. The coordinator routes the sealed shares by
roster index and cannot open them; it keeps masked inputs only as their running sum
(and the files it rebuilds that sum from after a crash).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from typing import TYPE_CHECKING

import numpy as np

from coordinator.rounds.states import RoundState
from coordinator import errors as E
from coordinator.aggregation.modular_sum import ModularSum
from coordinator.store.records import SecAggRoundRecord
from coordinator.rounds.engine import Progress
from coordinator.store.base import Store, dumps
from protocol import dp
from protocol.errors import ProtocolError
from protocol.secagg import distributed_dp, ring, server
from protocol.secagg.messages import (EncryptedShare, PublicKeys, RevealedShare, SecAggParams, SecAggView,
                                      UnmaskRequest, parse_list, round_context)

if TYPE_CHECKING:
    from coordinator.tasks.registry import Task



class SecAggRounds:
    """What the SecAgg phases of a round hold and settle. It holds no reference to the
    coordinator: the round driver asks the round engine when a phase closes, calls
    ``close_*`` (which settle the phase and return None, or return why the round fails) and
    makes the transition itself."""

    def __init__(self, store: Store, clock):
        self.store = store
        self.clock = clock
        self.sums: dict[tuple[str, int], ModularSum] = {}
        # What each unmasked round put on the wire and used of its ring (wire_metrics).
        self.wire: dict[tuple[str, int], dict] = {}

    # -- round bookkeeping ---------------------------------------------------------------
    def open(self, task: "Task", round_num: int, selection_deadline: float) -> float:
        """Writes the latest possible phase deadlines; returns the reporting deadline."""
        cfg = task.config
        advertise = selection_deadline + cfg.secagg_phase_s
        share = advertise + cfg.secagg_phase_s
        report = share + cfg.report_deadline_s
        self.store.add_secagg_round(SecAggRoundRecord(task.task_id, round_num, advertise, share,
                                                      report + cfg.secagg_phase_s))
        return report

    def _settle(self, task: "Task", round_num: int, column: str | None, **fields) -> None:
        """Writes the next phase's deadline (now + secagg_phase_s) and what the last phase settled."""
        sets = dict(fields)
        if column:
            sets[column] = self.clock() + task.config.secagg_phase_s
        if sets:
            self.store.update_secagg_round(task.task_id, round_num, **sets)

    def _row(self, task_id: str, round_num: int) -> SecAggRoundRecord:
        row = self.store.secagg_round(task_id, round_num)
        if row is None:
            raise E.NotFound(f"round {round_num} of task '{task_id}' does not use secure aggregation")
        return row

    def _params(self, row: SecAggRoundRecord) -> SecAggParams | None:
        return SecAggParams.from_dict(row.params) if row.params else None

    def _index_by_device(self, row: SecAggRoundRecord) -> dict[str, int]:
        return {d: i for i, d in row.roster.items()}

    def _index_of(self, row: SecAggRoundRecord, device_id: str) -> int:
        return self._index_by_device(row).get(device_id, 0)

    def _indices_of(self, row: SecAggRoundRecord, device_ids) -> list[int]:
        """Sorted roster indices of ``device_ids``."""
        index = self._index_by_device(row)
        return sorted(index[d] for d in device_ids)

    def _keys(self, task_id: str, round_num: int, roster: dict[int, str]) -> dict[int, PublicKeys]:
        bodies = self.store.secagg_messages(task_id, round_num, "keys")
        return {i: PublicKeys.from_dict(json.loads(bodies[d])) for i, d in roster.items()}

    def sum_for(self, task: "Task", round_num: int, params: SecAggParams) -> ModularSum:
        key = (task.task_id, round_num)
        if key not in self.sums:
            self.sums[key] = ModularSum(params.vector_length)
        return self.sums[key]

    def recover(self, task: "Task", round_num: int) -> None:
        row = self._row(task.task_id, round_num)
        params = self._params(row)
        if params is None:
            return
        acc = self.sum_for(task, round_num, params)
        updates = self.store.updates(task.task_id, round_num)
        for data in self.store.blobs.read_objects([u.blob for u in updates]):
            acc.add(ring.unpack(data or b"", params.modulus_bits, params.vector_length))

    def discard(self, task: "Task", round_num: int) -> None:
        self.sums.pop((task.task_id, round_num), None)
        self.wire.pop((task.task_id, round_num), None)  # a round that failed after unmasking
        self.store.delete_secagg_shares(task.task_id, round_num)

    # -- messages from devices -------------------------------------------------------------
    def _record(self, task: "Task", rnd, device_id: str, phase: str, body: str, states: tuple[str, ...],
                shares: list[EncryptedShare] | None = None) -> bool:
        """Store a phase message once; True when it is new, False for an identical retry."""
        digest = hashlib.sha256(body.encode()).hexdigest()
        prev = self.store.secagg_message_digest(task.task_id, rnd.round, phase, device_id)
        if prev is not None:
            if prev == digest:
                return False
            raise E.Conflict(f"a different {phase} message was already accepted from this device", "duplicate")
        if rnd.state not in states:
            raise E.Gone(f"the {phase} phase of round {rnd.round} is closed ({rnd.state})", "phase_closed")
        self.store.add_secagg_message(task.task_id, rnd.round, phase, device_id, body, digest, self.clock(),
                                      [(s.receiver, s.sender, s.ciphertext) for s in shares or ()])
        return True

    def post_keys(self, task: "Task", rnd, device_id: str, raw) -> bool:
        keys = PublicKeys.from_dict(raw)
        body = dumps(keys.to_dict())
        for other, other_body in self.store.secagg_messages(task.task_id, rnd.round, "keys").items():
            theirs = PublicKeys.from_dict(json.loads(other_body))
            if other != device_id and {keys.c_public, keys.s_public} & {theirs.c_public, theirs.s_public}:
                raise E.Conflict("these public keys were already advertised by another device", "replayed_keys")
        new = self._record(task, rnd, device_id, "keys", body, (RoundState.SELECTING, RoundState.ADVERTISING))
        return new

    def post_shares(self, task: "Task", rnd, device_id: str, raw) -> bool:
        row = self._row(task.task_id, rnd.round)
        index, params = self._index_of(row, device_id), self._params(row)
        if params is None or not index:
            raise E.Forbidden("this device is not in the round's roster", "not_in_roster")
        shares = parse_list(raw, "shares", EncryptedShare, params.n)
        try:
            server.check_shares(index, shares, server.round_graph(params)[index])
        except ProtocolError as exc:
            raise E.BadRequest(str(exc), exc.code) from exc
        body = dumps({"shares": [s.to_dict() for s in shares]})
        new = self._record(task, rnd, device_id, "shares", body, (RoundState.SHARING,), shares)
        return new

    def post_reveals(self, task: "Task", rnd, device_id: str, raw) -> bool:
        row = self._row(task.task_id, rnd.round)
        index, params = self._index_of(row, device_id), self._params(row)
        survivors = row.survivors
        if params is None or index not in survivors:
            raise E.Forbidden("only devices whose masked input was counted take part in unmasking", "not_survivor")
        reveals = parse_list(raw, "shares", RevealedShare, params.n)
        try:
            server.check_reveals(index, reveals, server.round_graph(params)[index], row.sharers, survivors)
        except ProtocolError as exc:
            raise E.BadRequest(str(exc), exc.code) from exc
        body = dumps({"shares": [s.to_dict() for s in reveals]})
        new = self._record(task, rnd, device_id, "reveals", body, (RoundState.UNMASKING,))
        return new

    def accept_masked_input(self, task: "Task", rnd, device_id: str, body: bytes) -> np.ndarray:
        row = self._row(task.task_id, rnd.round)
        params, index = self._params(row), self._index_of(row, device_id)
        sharers = row.sharers
        if rnd.state != RoundState.REPORTING or self.clock() > rnd.report_deadline:
            raise E.Gone(f"round {rnd.round} is not taking masked inputs ({rnd.state})", "round_closed")
        if params is None or index not in sharers:
            raise E.Forbidden("only devices that shared keys this round may send a masked input", "not_sharer")
        try:
            return ring.unpack(body, params.modulus_bits, params.vector_length)
        except ProtocolError as exc:
            raise E.BadRequest(str(exc), exc.code) from exc

    def masked_input_done(self, task: "Task", round_num: int, values: np.ndarray) -> None:
        self.sum_for(task, round_num, self._params(self._row(task.task_id, round_num))).add(values)

    def view(self, task: "Task", rnd, device_id: str) -> SecAggView:
        row = self._row(task.task_id, rnd.round)
        params = self._params(row)
        index = self._index_of(row, device_id)
        if params is None or not index:
            return SecAggView(rnd.state, reason=rnd.reason)
        keys = self._keys(task.task_id, rnd.round, row.roster)
        sharers = tuple(row.sharers)
        inbox = tuple(EncryptedShare(sender, index, c) for sender, c in self.store.secagg_inbox(
            task.task_id, rnd.round, index)) if sharers else ()
        unmask = None
        if row.survivors:
            unmask = UnmaskRequest(tuple(row.survivors), tuple(sorted(set(sharers) - set(row.survivors))))
        return SecAggView(rnd.state, index, params, keys, sharers, inbox, unmask, rnd.reason)

    # -- phase transitions (the round engine decides when; these do what closing a phase means) --
    def progress(self, task: "Task", rnd) -> Progress:
        """The round as the round engine sees it: counts of each phase's messages and what the
        closed phases settled."""
        row = self._row(task.task_id, rnd.round)
        params = self._params(row)
        count = self.store.secagg_message_count
        return Progress(rnd.state, rnd.selected, rnd.reported, rnd.selection_deadline, rnd.report_deadline,
                        advertised=count(task.task_id, rnd.round, "keys"),
                        shared=count(task.task_id, rnd.round, "shares"),
                        revealed=count(task.task_id, rnd.round, "reveals"),
                        roster=params.n if params else 0, sharers=len(row.sharers), survivors=len(row.survivors),
                        advertise_deadline=row.advertise_deadline, share_deadline=row.share_deadline,
                        unmask_deadline=row.unmask_deadline)

    def start_advertising(self, task: "Task", round_num: int) -> None:
        """The key advertisement's deadline; the driver moves the round to 'advertising'."""
        self._settle(task, round_num, "advertise_deadline")

    def close_advertising(self, task: "Task", rnd) -> str | None:
        """Fix the roster and the parameters (then 'sharing'), or why the round fails."""
        num, cfg = rnd.round, task.config
        devices = sorted(self.store.secagg_messages(task.task_id, num, "keys"))
        need = max(3, cfg.required_reports)
        if len(devices) < need:
            return f"secagg: {len(devices)} devices advertised keys, need at least {need}"
        try:
            params = server.choose_params(
                len(devices), plus=cfg.secagg == "secagg+", threshold_fraction=cfg.secagg_threshold,
                # The round's clip (adaptive clipping moves it): what its devices were told to clip to.
                degree=cfg.secagg_degree, quant_bits=cfg.secagg_bits, clip_norm=task.dp_clip or cfg.clip_norm,
                num_values=task.update_size, rotation_seed=secrets.randbits(63) + 1,
                graph_seed=os.urandom(32), extra=cfg.secagg_extra_slots,
                dp_noise_multiplier=cfg.dp_noise_multiplier if cfg.distributed_dp else 0.0,
                dp_min_survivors=cfg.dp_noise_reporters, sparse_fraction=cfg.codec_spec().sparse,
                dp_count_stddev=cfg.clipped_count_stddev if cfg.distributed_dp and cfg.adaptive_clip else 0.0)
        except ProtocolError as exc:
            return f"secagg: {exc}"
        roster = {str(i): d for i, d in enumerate(devices, start=1)}
        self._settle(task, num, "share_deadline", roster=roster, params=params.to_dict())
        return None

    def close_sharing(self, task: "Task", rnd) -> str | None:
        """Fix who shared (then 'reporting'), or why the round fails."""
        row = self._row(task.task_id, rnd.round)
        num, params = rnd.round, self._params(row)
        sharers = self._indices_of(row, self.store.secagg_messages(task.task_id, num, "shares"))
        need = max(params.threshold, task.config.required_reports)
        if len(sharers) < need:
            return f"secagg: {len(sharers)} devices shared keys, need at least {need} (threshold {params.threshold})"
        # Shares sent by devices that are not in U2 were never to be used; drop them so no inbox lists them.
        self.store.delete_secagg_shares(task.task_id, num, keep_senders=sharers)
        self._settle(task, num, None, sharers=sharers)
        return None

    def close_reporting(self, task: "Task", rnd) -> str | None:
        """Fix the survivors (then 'unmasking'), or why the round fails."""
        row = self._row(task.task_id, rnd.round)
        num, params = rnd.round, self._params(row)
        survivors = self._indices_of(row, [u.device_id for u in self.store.updates(task.task_id, num)])
        need = max(params.threshold, task.config.required_reports)
        if len(survivors) < need:
            return f"secagg: {len(survivors)} masked inputs arrived, need at least {need}"
        self._settle(task, num, "unmask_deadline", survivors=survivors)
        return None

    # -- the sum -----------------------------------------------------------------------------
    def unmasked_sum(self, task: "Task", round_num: int) -> tuple[np.ndarray, int, float | None]:
        """(sum of the survivors' updates, their number, sum of their clip bits or None).

        Raises `server.BelowThreshold` when the sum cannot be unmasked."""
        row = self._row(task.task_id, round_num)
        params = self._params(row)
        index = self._index_by_device(row)
        reveals = {index[d]: parse_list(json.loads(body), "shares", RevealedShare)
                   for d, body in self.store.secagg_messages(task.task_id, round_num, "reveals").items()}
        survivors = row.survivors
        acc = self.sum_for(task, round_num, params)
        if acc.count != len(self.store.updates(task.task_id, round_num)):
            # Masked inputs accepted by another coordinator replica: sum them again from the store.
            self.sums.pop((task.task_id, round_num), None)
            self.recover(task, round_num)
            acc = self.sum_for(task, round_num, params)
        codes = server.unmask_sum(acc.total, params, self._keys(task.task_id, round_num, row.roster),
                                  row.sharers, survivors, reveals, round_context(task.task_id, round_num))
        # The server cannot see a single masked input, so a device can put any ring element in
        # it. What it can enforce is the honest range of the sum: each coordinate's codes in
        # [0, n (2^b - 1)] (every value on the grid), the clip bits in [0, n], and the sum's
        # L2 norm at most n C plus the grid's rounding (ring.sum_norm_bound; sparse: what the
        # kept coordinates of n honest updates weigh, scaled by L / m). One hostile device then
        # moves the mean by at most about C dense, C kappa / sqrt(F) sparse.
        n, levels = len(survivors), (1 << params.quant_bits) - 1
        self.wire[(task.task_id, round_num)] = _wire_metrics(params, codes)
        if params.distributed_dp:  # the clip bits' sum came noised by the devices too
            bits = (distributed_dp.decode_count(int(codes[params.coded_length]), n, params.modulus_bits)
                    if params.extra else None)
            return self._noised_sum(task, params, codes, n), n, bits
        codes = np.minimum(codes, np.uint64(n * levels))
        total = ring.dequantize_sum(codes[: params.coded_length], n, params.num_values, params.quant_bits,
                                    params.value_range, params.rotation_seed, params.length, params.kept)
        # dp_clip: the clip the round's devices were given; sparse: what their kept parts weigh.
        bound = ring.sum_norm_bound(n, task.dp_clip, params.quant_bits, params.length, params.kept)
        total, _ = dp.clip_l2(total.astype(np.float64), bound)
        bits = float(min(int(codes[params.coded_length]), n)) if params.extra else None
        return total, n, bits

    def wire_metrics(self, task_id: str, round_num: int) -> dict:
        """The round's SecAgg ring as used: its modulus bits, the bits its unmasked sum needed
        (the smallest modulus that would not have wrapped it) and bits per parameter on the wire."""
        return self.wire.pop((task_id, round_num), {})

    @staticmethod
    def _noised_sum(task: "Task", params: SecAggParams, codes: np.ndarray, n: int) -> np.ndarray:
        """Distributed DP: the sum decoded centred (devices' codes are signed and noised),
        clamped per coordinate to what n honest devices reach, and bounded in L2 by n clips
        plus the rounding plus 1.5x the noise's expected norm, so a hostile device's ring
        element moves the mean by about a clip at most, as without noise."""
        total = distributed_dp.decode_sum(codes[: params.length], n, params.num_values, params.quant_bits,
                                          params.modulus_bits, params.value_range, params.dp_variance,
                                          params.rotation_seed)
        units = distributed_dp.per_level(params.quant_bits, params.value_range)
        noise_norm = (params.length * n * params.dp_variance) ** 0.5 / units
        bound = n * params.dp_bound / units + 1.5 * noise_norm
        clipped, _ = dp.clip_l2(total.astype(np.float64), bound)
        return clipped


def _wire_metrics(params: SecAggParams, codes: np.ndarray) -> dict:
    """Under distributed DP the codes are signed (centred); otherwise non-negative sums."""
    m = 1 << params.modulus_bits
    values = np.asarray(codes, np.int64)
    if params.distributed_dp:
        peak = int(np.max(np.abs(np.mod(values + m // 2, m) - m // 2))) if values.size else 0
        needed = (2 * peak + 1).bit_length()
    else:
        needed = max(1, int(np.max(values)).bit_length()) if values.size else 1
    return {"secagg_modulus_bits": params.modulus_bits, "secagg_sum_bits": needed,
            "secagg_wire_bits_per_value": params.modulus_bits * params.vector_length / params.num_values}
