"""The in-memory store's last_seen/due arrays (coordinator/store/liveness.py)."""

from coordinator.store.liveness import DeviceLiveness


def test_growing_past_the_capacity_keeps_every_device_and_counts_by_population():
    live = DeviceLiveness(capacity=4)
    live.add([(f"a{i}", "pa", 10.0, 100.0 + i) for i in range(3)])
    live.add([(f"b{i}", "pb", 20.0, 50.0) for i in range(7)])  # grows twice over
    assert live.of("a2") == (10.0, 102.0) and live.of("b6") == (20.0, 50.0) and live.of("zz") is None
    assert live.count_present(101.5, "pa") == 1 and live.count_present(50.0, "pb") == 7
    assert live.count_seen(15.0) == 7 and live.count_seen(0.0, "pa") == 3


def test_touch_rewrites_known_devices_and_ignores_others():
    live = DeviceLiveness(capacity=2)
    live.add([("a", "p", 0.0, 5.0), ("b", "p", 0.0, 5.0)])
    live.touch({"a": (30.0, 90.0), "ghost": (31.0, 91.0)})
    assert live.of("a") == (30.0, 90.0) and live.of("b") == (0.0, 5.0) and live.of("ghost") is None
    assert live.count_present(60.0, "p") == 1 and live.count_seen(30.0, "p") == 1
    live.add([("c", "p", 40.0, 95.0)])  # a registration after touches: the arrays grow, the values stay
    assert live.of("a") == (30.0, 90.0) and live.count_present(60.0, "p") == 2
