import json

import pytest

from protocol import strict_json
from protocol.errors import ProtocolError
from protocol.messages import CheckinRequest, UploadMeta


@pytest.mark.parametrize("text", ["[" * 5000, "[" * 3000 + "]" * 3000, "[" * 33 + "]" * 33, "1" * 5000,
                                  "-" + "1" * 21, '{"a": NaN}', "Infinity", "-Infinity", "1e400", "{", b"\xff",
                                  '{"name": "ab\\udd76"}', '{"\\ud800": 1}', '["\\udfff"]'])
def test_hostile_json_is_a_protocol_error(text):
    as_bytes = text if isinstance(text, bytes) else text.encode("utf-8")
    # The same hostile text as a body arrives: UTF-8 bytes, and in the UTF-16 JSON may use.
    for form in (text, as_bytes, bytearray(as_bytes)) + (() if isinstance(text, bytes) else (text.encode("utf-16-le"),)):
        with pytest.raises(ProtocolError) as info:
            strict_json.loads(form)
        assert info.value.code == "malformed_json"


@pytest.mark.parametrize("body", [b'{"a": "\xed\xa0\x80"}', b'["\xed\xbf\xbf"]'])
def test_a_raw_lone_surrogate_in_utf8_is_refused(body):
    """Python's json decodes bytes with surrogatepass, which let these in as str."""
    with pytest.raises(ProtocolError):
        strict_json.loads(body)


@pytest.mark.parametrize("text", ['{"a": "\udcff"}', '["x\ud800"]', '{"\udfff": 1}'])
def test_a_raw_lone_surrogate_in_a_str_is_refused(text):
    """A str argument (a header aiohttp decoded with surrogateescape) can hold one unescaped."""
    with pytest.raises(ProtocolError) as info:
        strict_json.loads(text)
    assert "surrogate" in str(info.value)


def test_the_shallow_shortcut_still_counts_brackets_inside_strings_safely():
    # 40 brackets inside a string: not deep, parsed by the walk; 32 real levels still pass.
    assert strict_json.loads(json.dumps({"s": "[" * 40})) == {"s": "[" * 40}
    assert strict_json.loads(b"[" * 32 + b"]" * 32) is not None


def test_ordinary_json_parses_as_usual():
    text = '{"a": [1, -2, 3.5, {"b": null, "c": true}], "d": "x", "e": 12345678901234567890}'
    assert strict_json.loads(text) == json.loads(text)
    assert strict_json.loads("[" * 32 + "]" * 32) is not None
    assert strict_json.loads('"\\ud83d\\ude00 caf\\u00e9"') == "\U0001F600 café"  # a surrogate pair is text


def test_dumps_sends_null_for_non_finite():
    assert strict_json.dumps({"a": float("nan"), "b": [float("inf"), 1.5]}) == '{"a": null, "b": [null, 1.5]}'


@pytest.mark.parametrize("raw, field", [
    ({"example_count": 10_000_001}, "example_count"), ({"example_count": 1, "eval_count": -1}, "eval_count"),
    ({"example_count": 1, "eval_accuracy": 1.01}, "eval_accuracy"), ({"example_count": 1, "train_loss": 2e9}, "train_loss"),
    ({"example_count": 1, "eval_loss": float("nan")}, "eval_loss"), ({"example_count": 10 ** 400}, "example_count"),
])
def test_upload_meta_bounds_name_the_field(raw, field):
    with pytest.raises(ProtocolError, match=field):
        UploadMeta.from_dict(raw)


@pytest.mark.parametrize("raw, field", [
    ({"state": {"battery": 10 ** 401}}, "battery"), ({"state": {}, "wait_s": 10 ** 401}, "wait_s"),
    ({"state": {"runtime": "x" * 65}}, "runtime"), ({"state": {"free_storage_mb": float("inf")}}, "free_storage_mb"),
])
def test_checkin_bounds_name_the_field(raw, field):
    with pytest.raises(ProtocolError, match=field):
        CheckinRequest.from_dict(raw)
