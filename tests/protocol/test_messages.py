import pytest

from protocol.errors import ProtocolError
from protocol.messages import CheckinRequest, CheckinResponse, DeviceState, UploadMeta


def test_checkin_request_parses_strictly():
    req = CheckinRequest.from_dict({"state": {"charging": True, "battery": 1}, "cached_models": ["ab"]})
    assert req.state.charging and req.state.battery == 1.0 and req.cached_models == ("ab",)
    for bad in ({"state": {"charging": "yes"}}, {"state": []}, {}, {"state": {"battery": 2.0}},
                {"state": {}, "cached_models": [1]}, []):
        with pytest.raises(ProtocolError):
            CheckinRequest.from_dict(bad)


def test_upload_meta_rejects_bools_and_out_of_range():
    assert UploadMeta.from_dict({"example_count": 3}).example_count == 3
    for bad in ({"example_count": True}, {"example_count": 0}, {"example_count": "3"}, {}):
        with pytest.raises(ProtocolError):
            UploadMeta.from_dict(bad)


def test_checkin_response_round_trip():
    retry = CheckinResponse("retry", retry_at=12.5, reason="no_slot")
    assert CheckinResponse.from_dict(retry.to_dict()) == retry
    with pytest.raises(ProtocolError):
        CheckinResponse.from_dict({"outcome": "maybe"})


def test_device_state_defaults():
    assert DeviceState.from_dict({}) == DeviceState()
