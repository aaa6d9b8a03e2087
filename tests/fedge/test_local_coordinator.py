from tests.serve_process import Server


def test_admin_token_starting_with_a_dash_starts_the_coordinator(tmp_path):
    # secrets.token_urlsafe() starts with "-" one time in 64: argparse used to take the
    # token for an option and the coordinator exited with code 2 (the demo then failed).
    token = "-Xy_token"
    with Server(str(tmp_path / "c.db"), admin_token=token) as server:
        status, body = server.call("POST", "/v1/admin/populations", {"name": "p"}, {"Authorization": f"Bearer {token}"})
        assert status == 201, body
