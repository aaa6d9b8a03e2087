from tests.serve_process import Server


def test_admin_token_starting_with_a_dash_starts_the_coordinator(tmp_path):
    # secrets.token_urlsafe() starts with "-" one time in 64: argparse used to take the
    # token for an option and the coordinator exited with code 2 (the demo then failed).
    token = "-Xy_token"
    with Server(str(tmp_path / "c.db"), admin_token=token) as server:
        status, body = server.call("POST", "/v1/admin/populations", {"name": "p"}, {"Authorization": f"Bearer {token}"})
        assert status == 201, body


def test_the_demos_accuracy_gate_follows_its_rounds():
    """`fedge demo --rounds 5` exited 1 ("0.8250 is below 0.9"): the default gate is for 20 rounds."""
    from fedge.demo import DEFAULT_GATE, accuracy_gate

    assert accuracy_gate(None, 20) == DEFAULT_GATE and accuracy_gate(None, 40) == DEFAULT_GATE
    assert accuracy_gate(None, 5) is None
    assert accuracy_gate(0.5, 5) == 0.5 and accuracy_gate(0.99, 20) == 0.99
