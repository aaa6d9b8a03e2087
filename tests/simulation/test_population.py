"""Population models (simulation/population.py): the file's keys over the defaults, bad input
named, availability by local time, and the shipped example trace."""

import numpy as np
import pytest

from simulation.population import Population, read_population, write_example_trace


def test_defaults_and_a_file_that_changes_some_keys(tmp_path):
    assert read_population(None)["availability"]["model"] == "diurnal"
    path = tmp_path / "pop.toml"
    path.write_text('[speed]\nsigma = 0.5\n[network]\nup_mbps = 1.0\n[dropout]\ntraining = 0.2\n')
    settings = read_population(str(path))
    assert settings["speed"]["sigma"] == 0.5 and settings["network"]["up_mbps"] == 1.0
    assert settings["network"]["down_mbps"] == 20.0  # untouched keys keep their defaults
    pop = Population.sample(settings, 1000, np.random.default_rng(0))
    assert pop.dropout == 0.2
    assert 0.5e6 / 8 < float(np.median(pop.up_bps)) < 2e6 / 8


@pytest.mark.parametrize("text, named", [
    ("[gpu]\nx = 1\n", "[gpu]"), ("[speed]\nsigma = -1\n", "speed.sigma"), ("[network]\nuplink = 3\n", "network.uplink"),
    ("[availability]\nmodel = \"sometimes\"\n", "availability.model"), ("[speed]\nmodel = \"classes\"\n", "classes"),
    ("[availability]\nmodel = \"trace\"\n", "availability.trace"), ("not toml [", "not valid TOML"),
])
def test_a_bad_population_file_is_refused_by_name(tmp_path, text, named):
    path = tmp_path / "pop.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        read_population(str(path))


def test_diurnal_availability_follows_each_devices_night():
    settings = read_population(None)
    settings["availability"].update(timezones=[0], night_start_sd_h=0.0, night_hours_sd=0.0, daytime=0.0)
    pop = Population.sample(settings, 50, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    at = {h: sum(pop.availability.available(i, h * 3600.0, rng) for i in range(50)) for h in (0, 3, 6, 12, 23)}
    assert at[0] == at[3] == 50 and at[23] == 50  # 23:00 to 05:00 local time
    assert at[6] == at[12] == 0
    # Spread over time zones, about night_hours / 24 of the population is available at any hour.
    spread = Population.sample(read_population(None), 4000, np.random.default_rng(3))
    share = np.mean([spread.availability.available(i, 12 * 3600.0, rng) for i in range(4000)])
    assert 0.15 < share < 0.4


def test_the_example_trace_drives_availability(tmp_path):
    path = write_example_trace(tmp_path / "trace.csv", devices=5, days=1)
    settings = read_population(None)
    settings["availability"].update(model="trace", trace=str(path))
    pop = Population.sample(settings, 5, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    a, b = pop.windows[0][0]
    assert pop.availability.available(0, (a + b) / 2, rng) and not pop.availability.available(0, b + 1.0, rng)
