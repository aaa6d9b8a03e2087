import json
import urllib.request

from fedge.local_coordinator import LocalCoordinator


def test_admin_token_starting_with_a_dash_starts_the_coordinator(tmp_path):
    # secrets.token_urlsafe() starts with "-" one time in 64: argparse used to take the
    # token for an option and the coordinator exited with code 2 (the demo then failed).
    token = "-Xy_token"
    with LocalCoordinator(str(tmp_path / "c.db"), token) as server:
        req = urllib.request.Request(server.url + "/v1/admin/populations", data=json.dumps({"name": "p"}).encode(),
                                     method="POST", headers={"Authorization": f"Bearer {token}",
                                                             "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 201
