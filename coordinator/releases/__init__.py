"""Model releases: committed checkpoints delivered to a population's devices for inference,
signed, staged by percentage and reversible (states.py, desk.py for the admin side,
offers.py for what a check-in offers)."""
