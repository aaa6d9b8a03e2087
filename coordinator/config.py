"""`fedge serve` settings: flags and/or a TOML file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    db: str = "fedge.db"  # a SQLite file, or postgresql://user@host:port/dbname (replicas share it)
    data_dir: str = ""  # blobs (models, checkpoints, updates); default DB.data; required with PostgreSQL
    # Blobs in S3-compatible object storage instead (s3://BUCKET/PREFIX; endpoint, region and
    # credentials from the AWS environment variables): replicas then share no folder, and
    # devices download models and checkpoints by presigned URLs, not through the coordinator.
    blobs: str = ""
    # The object store's address as devices reach it, when it is not the coordinator's
    # (AWS_ENDPOINT_URL); presigned URLs are signed for it.
    blobs_public_endpoint: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str = ""
    tick_s: float = 0.1
    min_retry_s: float = 1.0
    max_retry_s: float = 600.0
    ineligible_retry_s: float = 300.0
    checkin_rate: float = 5.0
    synchronous: str = "NORMAL"
    tls_cert: str = ""
    tls_key: str = ""
    body_timeout_s: float = 30.0  # a request body that stops arriving for this long gets 408
    # ...and one that arrives slower than this on average gets 408 at body_timeout_s + size / rate,
    # however often a byte comes (a trickle of one byte every few seconds held descriptors forever).
    min_body_rate: float = 1024.0  # bytes per second
    # A request's head (request line and headers) must arrive within this many seconds of the
    # connection opening or of the previous response; so must a kept-alive connection's next
    # request, or it is closed. A trickle of header bytes cannot hold a descriptor longer.
    header_timeout_s: float = 15.0
    # Request bodies being read at once: per client address (loopback exempt: emulated fleets)
    # and in all; past either, 503 with Retry-After before anything is read.
    max_body_reads_per_address: int = 64
    max_body_reads: int = 2048
    max_held_checkins: int = 4096  # long-polling check-ins held at once (each is an open connection)
    register_rate: float = 10.0  # registrations per second per client address (loopback exempt); 0: no limit
    attestation_verifier: str = ""  # MODULE:FUNCTION checking devices' attestation (coordinator.gateway.attestation)
    # A robust aggregator (trimmed_mean, median, krum) keeps every update of a round: a task whose
    # reducer would need more than this at its peak (reports x model size, estimated by
    # coordinator.aggregation.reducers.peak_bytes) is refused at creation.
    max_aggregation_mib: float = 2048.0
    # The status page and /metrics without the admin token: True for everyone, False for no one,
    # None (default) for requests from this host only (coordinator.http.client_address decides who that is).
    status_public: bool | None = None
    # Proxies (addresses or CIDRs) whose X-Forwarded-For names the real client; without them,
    # every client behind a balancer looks like the balancer.
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self):
        from coordinator.http.client_address import parse_networks

        object.__setattr__(self, "trusted_proxies", tuple(str(p) for p in self.trusted_proxies))
        parse_networks(self.trusted_proxies)  # a clear error at start, not at the first request


def config_from_toml(path: str, **overrides) -> ServeConfig:
    import tomllib

    with open(path, "rb") as f:
        raw = tomllib.load(f)
    unknown = set(raw) - set(ServeConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown setting(s) in {path}: {', '.join(sorted(unknown))}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return ServeConfig(**raw)
