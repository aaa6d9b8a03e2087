"""Two S3 client libraries on the same work against a real S3-compatible server (SeaweedFS,
started here in a temporary folder): boto3 (the AWS SDK, pure Python, called from threads) and
obstore (Rust's object_store, releases the GIL). The work is what the coordinator's blob store
does: put and get whole objects of a checkpoint's size and of an update's, delete them, and
presign download URLs (one per blob a round names).

    python bench/s3_clients.py [--big-mib 4] [--n 40] [--small-kib 26] [--small-n 400] [--sign-n 2000]

Prints, per library and operation: wall seconds, MB/s or operations per second, and the
process's CPU seconds (what the coordinator's loop pays), with the CPU named.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.machine import cpu_name  # noqa: E402
from fedge.local_s3 import LocalS3  # noqa: E402


def timed(label: str, fn, n_ops: int, n_bytes: int = 0) -> dict:
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rate = f"{n_bytes / wall / 1e6:8.1f} MB/s" if n_bytes else f"{n_ops / wall:8.0f} ops/s"
    print(f"  {label:<28} {wall:7.3f} s  {rate}  cpu {cpu:6.3f} s ({cpu / n_ops * 1e3:.3f} ms/op)")
    return {"wall": wall, "cpu": cpu}


def boto3_suite(s3: LocalS3, bucket: str, big: bytes, small: bytes, args) -> None:
    import boto3
    from botocore.config import Config

    env = s3.env()
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_REGION"],
                          config=Config(s3={"addressing_style": "path"}, max_pool_connections=8))
    pool = ThreadPoolExecutor(8)
    print("boto3", __import__("boto3").__version__)

    def put(prefix, data, n):
        list(pool.map(lambda i: client.put_object(Bucket=bucket, Key=f"{prefix}/{i}", Body=data), range(n)))

    def get(prefix, n):
        list(pool.map(lambda i: client.get_object(Bucket=bucket, Key=f"{prefix}/{i}")["Body"].read(), range(n)))

    def delete(prefix, n):
        list(pool.map(lambda i: client.delete_object(Bucket=bucket, Key=f"{prefix}/{i}"), range(n)))

    timed(f"put {args.n} x {args.big_mib} MiB", lambda: put("b3big", big, args.n), args.n, args.n * len(big))
    timed(f"get {args.n} x {args.big_mib} MiB", lambda: get("b3big", args.n), args.n, args.n * len(big))
    timed(f"put {args.small_n} x {args.small_kib} KiB", lambda: put("b3small", small, args.small_n), args.small_n)
    timed(f"get {args.small_n} x {args.small_kib} KiB", lambda: get("b3small", args.small_n), args.small_n)
    timed(f"delete {args.small_n}", lambda: delete("b3small", args.small_n), args.small_n)
    timed(f"presign {args.sign_n} GETs", lambda: [client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": f"b3big/{i % args.n}"}, ExpiresIn=600)
        for i in range(args.sign_n)], args.sign_n)


def obstore_suite(s3: LocalS3, bucket: str, big: bytes, small: bytes, args) -> None:
    import obstore
    from obstore.store import S3Store

    env = s3.env()
    store = S3Store(bucket, endpoint=env["AWS_ENDPOINT_URL"], access_key_id=env["AWS_ACCESS_KEY_ID"],
                    secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region=env["AWS_REGION"],
                    client_options={"allow_http": True})
    pool = ThreadPoolExecutor(8)
    print("obstore", obstore.__version__)

    def put(prefix, data, n):
        list(pool.map(lambda i: obstore.put(store, f"{prefix}/{i}", data), range(n)))

    def get(prefix, n):
        list(pool.map(lambda i: obstore.get(store, f"{prefix}/{i}").bytes(), range(n)))

    def delete(prefix, n):
        list(pool.map(lambda i: obstore.delete(store, f"{prefix}/{i}"), range(n)))

    timed(f"put {args.n} x {args.big_mib} MiB", lambda: put("obbig", big, args.n), args.n, args.n * len(big))
    timed(f"get {args.n} x {args.big_mib} MiB", lambda: get("obbig", args.n), args.n, args.n * len(big))
    timed(f"put {args.small_n} x {args.small_kib} KiB", lambda: put("obsmall", small, args.small_n), args.small_n)
    timed(f"get {args.small_n} x {args.small_kib} KiB", lambda: get("obsmall", args.small_n), args.small_n)
    timed(f"delete {args.small_n}", lambda: delete("obsmall", args.small_n), args.small_n)
    expires = datetime.timedelta(seconds=600)
    timed(f"presign {args.sign_n} GETs", lambda: [obstore.sign(store, "GET", f"obbig/{i % args.n}", expires)
                                                   for i in range(args.sign_n)], args.sign_n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--big-mib", type=float, default=4.0, help="a checkpoint's size (1M float32 parameters)")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--small-kib", type=float, default=26.0, help="an update's size (the demo model)")
    p.add_argument("--small-n", type=int, default=400)
    p.add_argument("--sign-n", type=int, default=2000)
    args = p.parse_args()
    big = os.urandom(int(args.big_mib * 2**20))
    small = os.urandom(int(args.small_kib * 1024))
    print(f"CPU: {cpu_name()}; server: SeaweedFS on loopback; 8 client threads")
    with LocalS3() as s3:
        bucket = s3.create_bucket("bench")
        boto3_suite(s3, bucket, big, small, args)
        obstore_suite(s3, bucket, big, small, args)


if __name__ == "__main__":
    main()
