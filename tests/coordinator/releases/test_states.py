"""A release's life (coordinator/releases/states.py): what may be promoted and rolled back."""

import pytest

from coordinator.releases.states import ReleaseRefused, ReleaseState, check_promote, check_rollback


@pytest.mark.parametrize("state, current, percent, code", [
    (ReleaseState.SUPERSEDED, 10, 50, "not_active"), (ReleaseState.ROLLED_BACK, 10, 50, "not_active"),
    (ReleaseState.ACTIVE, 50, 10, "percent_down"), (ReleaseState.ACTIVE, 10, 0, "bad_percent"),
    (ReleaseState.ACTIVE, 10, 100.5, "bad_percent")])
def test_promotions_that_are_refused(state, current, percent, code):
    with pytest.raises(ReleaseRefused) as err:
        check_promote(state, current, percent)
    assert err.value.code == code


@pytest.mark.parametrize("current, percent", [(10, 10), (10, 50), (1, 100), (99.5, 100)])
def test_an_active_release_only_grows(current, percent):
    check_promote(ReleaseState.ACTIVE, current, percent)


@pytest.mark.parametrize("state, newest, earlier, code", [
    (ReleaseState.SUPERSEDED, False, True, "not_active"), (ReleaseState.ROLLED_BACK, True, True, "not_active"),
    (ReleaseState.ACTIVE, False, True, "not_newest"), (ReleaseState.ACTIVE, True, False, "nothing_to_return_to")])
def test_rollbacks_that_are_refused(state, newest, earlier, code):
    with pytest.raises(ReleaseRefused) as err:
        check_rollback(state, newest, earlier)
    assert err.value.code == code


def test_the_newest_active_release_with_an_earlier_model_rolls_back():
    check_rollback(ReleaseState.ACTIVE, True, True)
