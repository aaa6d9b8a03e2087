"""Run the coordinator service (aiohttp, SQLite in WAL mode).

Settings come from flags and/or a TOML file (--config) whose keys are the long flag
names with '_' (e.g. db, data_dir, blobs, blobs_public_endpoint, host, port, admin_token, min_retry_s, max_retry_s,
ineligible_retry_s, checkin_rate, synchronous, tls_cert, tls_key, body_timeout_s,
max_held_checkins, register_rate, attestation_verifier, status_public, max_aggregation_mib,
trusted_proxies).
Flags win.
The admin token is --admin-token, else $FEDGE_ADMIN_TOKEN, else a random one written to
DB.admin-token (mode 0600; its path is printed), which `fedge task`, `fedge population` and
`fedge fleet` read when run next to the database.
"""

from __future__ import annotations

import argparse
import logging
import os


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file with settings")
    parser.add_argument("--db", help="SQLite database path (default fedge.db), or postgresql://user@host:port/dbname "
                                     "for replicas sharing one database")
    parser.add_argument("--data-dir", help="where models, checkpoints and updates live (default DB.data/ next to a "
                                           "SQLite file; required with PostgreSQL: a directory every replica shares)")
    parser.add_argument("--blobs", metavar="s3://BUCKET/PREFIX",
                        help="keep models, checkpoints and updates in S3-compatible object storage (endpoint, "
                             "region and credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, "
                             "AWS_SECRET_ACCESS_KEY); devices then download by presigned URL and replicas share "
                             "no folder (default: the data directory)")
    parser.add_argument("--blobs-public-endpoint", metavar="URL",
                        help="the object store's address as devices reach it, when not AWS_ENDPOINT_URL")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8080)")
    parser.add_argument("--admin-token", help="admin bearer token (default $FEDGE_ADMIN_TOKEN, else a random one "
                                              "written to DB.admin-token)")
    parser.add_argument("--min-retry-s", type=float, help="pace steering: shortest come-back delay (default 1)")
    parser.add_argument("--max-retry-s", type=float, help="pace steering: longest come-back delay (default 600)")
    parser.add_argument("--ineligible-retry-s", type=float, help="come-back delay for ineligible devices (default 300)")
    parser.add_argument("--checkin-rate", type=float, help="per-device check-in rate limit, per second (default 5)")
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], help="SQLite durability (FULL survives power loss)")
    parser.add_argument("--tls-cert", help="TLS certificate (PEM); serve HTTPS with --tls-key")
    parser.add_argument("--tls-key", help="TLS private key (PEM)")
    parser.add_argument("--body-timeout-s", type=float,
                        help="drop a request whose body stops arriving for this long, with 408 (default 30)")
    parser.add_argument("--max-held-checkins", type=int,
                        help="long-polling check-ins held at once; past it a device gets its retry time at once "
                             "(default 4096: each held check-in is an open connection)")
    parser.add_argument("--register-rate", type=float,
                        help="device registrations per second per client address; loopback is exempt (default 10)")
    parser.add_argument("--max-aggregation-mib", type=float,
                        help="refuse a task whose robust aggregator (trimmed_mean, median, krum) would keep more "
                             "than this many MiB of updates per round (default 2048)")
    parser.add_argument("--attestation-verifier", metavar="MODULE:FUNCTION",
                        help="verify(population, attestation) -> bool for populations that require attestation")
    parser.add_argument("--status-public", action=argparse.BooleanOptionalAction, default=None,
                        help="serve / and /metrics without the admin token to everyone (--status-public) or no one "
                             "(--no-status-public); default: to requests from this host only")
    parser.add_argument("--trusted-proxy", dest="trusted_proxies", action="append", metavar="ADDRESS_OR_CIDR",
                        help="a load balancer whose X-Forwarded-For names the real client (repeat for several); "
                             "without it every client behind a balancer is the balancer")
    parser.add_argument("--access-log", action="store_true",
                        help="log one line per HTTP request (off by default: at 10,000 devices it is noise and CPU)")
    parser.add_argument("--log-level", default="INFO")


def tune_gc() -> None:
    """With 10,000 devices connected the collector's full passes took 200-300 ms each (one
    every 2 s), and every check-in waiting behind one waited that long. What was imported
    is moved out of its reach (gc.freeze), and young collections run less often, so a full
    pass comes rarely and has fewer objects to walk."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLDS[0], GC_THRESHOLDS[1], GC_THRESHOLDS[2])


GC_THRESHOLDS = tuple(int(x) for x in os.environ.get("FEDGE_GC_THRESHOLDS", "50000,50,100").split(","))


def run(args: argparse.Namespace) -> int:
    import ssl

    from aiohttp import web

    from coordinator.http.app import ADMIN_TOKEN, create_app
    from coordinator.config import ServeConfig, config_from_toml

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    overrides = {k: getattr(args, k) for k in ("db", "data_dir", "blobs", "blobs_public_endpoint", "host", "port", "admin_token", "min_retry_s",
                                                "max_retry_s", "ineligible_retry_s", "checkin_rate", "synchronous",
                                                "tls_cert",
                                                "tls_key", "body_timeout_s", "max_held_checkins", "register_rate",
                                                "attestation_verifier", "status_public", "max_aggregation_mib",
                                                "trusted_proxies")}
    config = config_from_toml(args.config, **overrides) if args.config else ServeConfig(
        **{k: v for k, v in overrides.items() if v is not None})
    _check_port_free(config.host, config.port)  # before the database or its folder is created
    app = create_app(config)
    tune_gc()

    async def _say_stopping(_app) -> None:
        print("fedge coordinator stopping: closing connections (held check-ins end at once)", flush=True)

    app.on_shutdown.insert(0, _say_stopping)
    token = app[ADMIN_TOKEN]
    if not (config.admin_token or os.environ.get("FEDGE_ADMIN_TOKEN")):
        # Next to a SQLite file; in the shared data directory with PostgreSQL.
        token_file = (os.path.join(config.data_dir, "admin-token") if "://" in config.db
                      else config.db + ".admin-token")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        print(f"admin token written to {token_file}")
    ssl_context = None
    if config.tls_cert or config.tls_key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.tls_cert, config.tls_key)
    scheme = "https" if ssl_context else "http"
    access_log = logging.getLogger("aiohttp.access") if args.access_log else None
    # shutdown_timeout: requests still open after this long at a stop (long polls of up to 30 s)
    # are cancelled; a device retries them elsewhere. aiohttp's default waits a minute.
    # keepalive_timeout: aiohttp closes a connection whose next request head has not arrived
    # this long after it opened or after the last response: the head deadline.
    web.run_app(app, host=config.host, port=config.port, ssl_context=ssl_context, access_log=access_log,
                shutdown_timeout=SHUTDOWN_TIMEOUT_S, keepalive_timeout=config.header_timeout_s,
                print=lambda _: print(f"fedge coordinator on {scheme}://{config.host}:{config.port} "
                                      f"(db {_shown(config.db)})",
                                      flush=True))
    return 0


SHUTDOWN_TIMEOUT_S = 2.0


def _check_port_free(host: str, port: int) -> None:
    """A clear error, before anything is created, when the address is taken."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SystemExit(f"fedge serve: error: cannot resolve --host {host}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            raise SystemExit(f"fedge serve: error: {host}:{port} is not available ({exc.strerror}); another "
                             "coordinator may be running there, or pick another --port") from None


def _shown(db: str) -> str:
    """The database as printed: a URL without its password."""
    if "://" not in db:
        return db
    from urllib.parse import urlsplit

    url = urlsplit(db)
    host = url.hostname or ""
    user = f"{url.username}@" if url.username else ""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{user}{host}{port}{url.path}"
