"""A throwaway S3-compatible object store for tests and benchmarks: SeaweedFS's `weed server`
(master, volume server, filer and S3 gateway in one process; scripts/seaweedfs.sh builds the
binary) in a temporary directory on free loopback ports, with one access key from an S3
identity file (SigV4 is checked, so presigned URLs are really verified), stopped and deleted
afterwards.

    with LocalS3() as s3:
        s3.create_bucket("t1")
        env = s3.env()          # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... for a coordinator
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from fedge.local_coordinator import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCESS_KEY = "fedge-test-access"
SECRET_KEY = "fedge-test-secret-key-0123456789"
REGION = "us-east-1"


def find_weed() -> str | None:
    """The `weed` binary: $FEDGE_WEED, else scripts/seaweedfs.sh's cached build, else PATH."""
    if os.environ.get("FEDGE_WEED"):
        return os.environ["FEDGE_WEED"]
    try:
        cached = subprocess.run(["bash", os.path.join(REPO, "scripts", "seaweedfs.sh"), "path"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        cached = ""
    if cached and os.access(cached, os.X_OK):
        return cached
    return shutil.which("weed")


class LocalS3:
    def __init__(self, weed: str | None = None, host: str = "127.0.0.1", bind: str = ""):
        """``host``: the address it names itself by; ``bind``: the one it listens on (default
        ``host``; 0.0.0.0 for clients in network namespaces)."""
        self.weed = weed or find_weed()
        if self.weed is None:
            raise RuntimeError("SeaweedFS is not built (bash scripts/seaweedfs.sh install)")
        self.host, self.bind = host, bind or host
        self.dir = tempfile.mkdtemp(prefix="fedge-s3-")
        self.port = free_port()
        self._proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self, host: str = "") -> dict[str, str]:
        """The standard AWS variables that point a client (a coordinator) at this store, by
        ``host`` (default the store's own address)."""
        endpoint = f"http://{host}:{self.port}" if host else self.endpoint
        return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def start(self, timeout_s: float = 90.0) -> "LocalS3":
        identities = {"identities": [{"name": "fedge", "credentials": [
            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        config = os.path.join(self.dir, "s3.json")
        with open(config, "w") as f:
            json.dump(identities, f)
        data = os.path.join(self.dir, "data")
        os.makedirs(data)
        ports = {name: free_port() for name in ("master", "volume", "filer")}
        argv = [self.weed, "server", f"-dir={data}", f"-ip={self.host}", f"-ip.bind={self.bind}",
                f"-master.port={ports['master']}", f"-master.port.grpc={free_port()}",
                f"-volume.port={ports['volume']}", f"-volume.port.grpc={free_port()}",
                f"-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={free_port()}",
                "-s3", f"-s3.port={self.port}", f"-s3.port.grpc={free_port()}", f"-s3.config={config}",
                # Nothing else listens (their default ports would collide between two stores).
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-iam=false",
                # Small volumes: a test store holds kilobytes to megabytes, not 30 GB volumes.
                "-master.volumeSizeLimitMB=64", "-volume.max=0"]
        self._log = open(os.path.join(self.dir, "weed.log"), "wb")
        self._proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.dir,
                                      start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"weed server exited with {self._proc.returncode}: {self.log_tail()}")
            if self._answers():
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"weed server did not answer S3 on {self.endpoint} in {timeout_s:.0f} s")

    def _answers(self) -> bool:
        try:
            # Unsigned: answers 403 (AccessDenied) once the gateway is up, which is all we ask here.
            urllib.request.urlopen(self.endpoint + "/", timeout=2)
        except urllib.error.HTTPError as e:
            return e.code in (403, 400)
        except OSError:
            return False
        return True

    def bucket(self, name: str):
        """An obstore S3Store on bucket ``name`` with this store's credentials."""
        from obstore.store import S3Store

        env = self.env()
        return S3Store(name, endpoint=env["AWS_ENDPOINT_URL"], access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY,
                       region=REGION, client_options={"allow_http": True})

    def create_bucket(self, name: str, timeout_s: float = 60.0) -> str:
        """A new bucket: SeaweedFS creates one on the first write of an admin identity (retried
        while its volumes are still coming up)."""
        import obstore

        deadline = time.monotonic() + timeout_s
        store = self.bucket(name)
        while True:
            try:
                obstore.put(store, ".probe", b"ok")
                obstore.delete(store, ".probe")
                return name
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """key -> size of every object in the bucket under ``prefix``."""
        import obstore

        return {meta["path"]: meta["size"] for batch in obstore.list(self.bucket(bucket), prefix=prefix or None)
                for meta in batch}

    def log_tail(self, n: int = 3000) -> str:
        try:
            with open(os.path.join(self.dir, "weed.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, 9)
            self._proc.wait(timeout=30)
        self._proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LocalS3":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
