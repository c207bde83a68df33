"""Bad input: always the right 4xx as JSON with X-Replica, never HTML and never a 500."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient
from storekit import assert_error


@pytest.mark.parametrize(
    "path",
    [
        "/kv/has%20space",
        "/kv/slash/inside",
        "/kv/a%2Fb",
        "/kv/caf%C3%A9",
        "/kv/semi;colon",
        "/kv/star*",
        "/kv/",
        "/kv/" + "k" * 65,
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_kv_bad_key(client: FlaskClient, method: str, path: str) -> None:
    r = client.open(path, method=method, json={"value": "v"})
    body = assert_error(r, 400)
    assert "key" in body["error"]


def test_kv_key_without_trailing_slash_redirects_then_400(client: FlaskClient) -> None:
    r = client.get("/kv", follow_redirects=True)
    assert_error(r, 400)


@pytest.mark.parametrize(
    "value",
    ["x" * 4097, "é" * 2049, "\U0001f600" * 1025],  # one byte over, counted in UTF-8 bytes
    ids=["ascii", "2-byte", "4-byte"],
)
def test_kv_oversize_value_is_413(client: FlaskClient, value: str) -> None:
    body = assert_error(client.put("/kv/k", json={"value": value}), 413)
    assert "4096" in body["error"]
    assert_error(client.get("/kv/k"), 404)  # nothing stored


def test_kv_body_over_max_content_length_is_413(client: FlaskClient) -> None:
    r = client.put("/kv/k", json={"value": "x" * 40_000})
    assert_error(r, 413)


def test_kv_largest_value_fully_escaped_still_fits(client: FlaskClient) -> None:
    value = "\x01" * 4096  # json.dumps sends each byte as \u0001: 24 KiB of body
    data = json.dumps({"value": value})
    assert len(data) > 24_000
    r = client.put("/kv/k", data=data, content_type="application/json")
    assert r.status_code == 200
    assert client.get("/kv/k").get_json()["value"] == value


@pytest.mark.parametrize(
    "payload",
    [{"value": 1}, {"value": None}, {"value": ["a"]}, {"value": {"a": 1}}, {"value": True}],
    ids=["int", "null", "list", "object", "bool"],
)
def test_kv_non_string_value_is_400(client: FlaskClient, payload: dict) -> None:
    body = assert_error(client.put("/kv/k", json=payload), 400)
    assert "string" in body["error"]


@pytest.mark.parametrize("payload", [{}, {"val": "x"}, ["x"], "x", 3, None])
def test_kv_missing_value_is_400(client: FlaskClient, payload: object) -> None:
    data = json.dumps(payload)
    assert_error(client.put("/kv/k", data=data, content_type="application/json"), 400)


@pytest.mark.parametrize(
    "data", ['{"value": "x"', "{", "", "not json", b"\xff\xfe", '{"value": "x"} trailing']
)
def test_kv_malformed_json_is_400(client: FlaskClient, data: str | bytes) -> None:
    body = assert_error(client.put("/kv/k", data=data, content_type="application/json"), 400)
    assert "JSON" in body["error"]


def test_kv_lone_surrogate_is_400(client: FlaskClient) -> None:
    r = client.put("/kv/k", data='{"value": "\\ud800"}', content_type="application/json")
    assert_error(r, 400)


@pytest.mark.parametrize(
    ("data", "content_type"),
    [('{"value": "x"}', "text/plain"), ("value=x", "application/x-www-form-urlencoded"),
     ("", None)],
)  # fmt: skip
def test_kv_non_json_body_is_400(client: FlaskClient, data: str, content_type: str | None) -> None:
    body = assert_error(client.put("/kv/k", data=data, content_type=content_type), 400)
    assert "JSON" in body["error"]


def test_counter_malformed_json_is_400(client: FlaskClient) -> None:
    body = assert_error(client.post("/counter", data="{", content_type="application/json"), 400)
    assert body["error"] == "malformed JSON body"
    assert client.post("/counter").get_json() == {"value": 1}  # the bad one did not count


def test_counter_oversize_json_body_is_413(client: FlaskClient) -> None:
    r = client.post("/counter", data="[" + "1," * 20_000 + "1]", content_type="application/json")
    assert_error(r, 413)


@pytest.mark.parametrize(
    "query",
    ["", "?ms=", "?ms=abc", "?ms=1.5", "?ms=-1", "?ms=1001", "?ms=%205", "?ms=+5", "?ms=1_0",
     "?ms=99999999999999999999", "?ms=1e3", "?other=5"],
)  # fmt: skip
def test_work_bad_ms_is_400(client: FlaskClient, query: str) -> None:
    body = assert_error(client.get("/work" + query), 400)
    assert "ms" in body["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/counter"), ("POST", "/json"), ("DELETE", "/kv/k"), ("POST", "/kv/k"),
     ("POST", "/work?ms=1"), ("POST", "/healthz"), ("PUT", "/readyz"), ("PUT", "/session")],
)  # fmt: skip
def test_wrong_method_is_405(client: FlaskClient, method: str, path: str) -> None:
    r = client.open(path, method=method)
    body = assert_error(r, 405)
    assert body["error"] == "method not allowed"
    assert r.headers["Allow"]


@pytest.mark.parametrize("path", ["/", "/nope", "/json/extra", "/counter/1", "/static/x.css"])
def test_unknown_path_is_404(client: FlaskClient, path: str) -> None:
    body = assert_error(client.get(path), 404)
    assert body["error"] == "not found"


def test_unhandled_exception_is_500_json(app, client: FlaskClient) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production (TESTING re-raises)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    body = assert_error(client.get("/boom"), 500)
    assert body["error"] == "internal server error"


def test_deeply_nested_json_is_400_not_500(client: FlaskClient) -> None:
    deep = "[" * 5000 + "]" * 5000  # beyond the parser's recursion limit
    r = client.put("/kv/k", data='{"value": ' + deep + "}", content_type="application/json")
    assert assert_error(r, 400)["error"] == "JSON nested too deeply"
    r = client.post("/counter", data=deep, content_type="application/json")
    assert_error(r, 400)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("headers", "word"),
    [({}, "required"), ({"X-User": ""}, "1 to 64"), ({"X-User": "a b"}, "only"),
     ({"X-User": "a/b"}, "only"), ({"X-User": "k" * 65}, "1 to 64")],
)  # fmt: skip
def test_session_bad_user_is_400(client: FlaskClient, method: str, headers: dict, word: str):
    r = client.open("/session", method=method, headers=headers, json={"data": {}})
    body = assert_error(r, 400)
    assert "X-User" in body["error"] and word in body["error"]


@pytest.mark.parametrize(
    ("data", "word"),
    [("{}", "body"), ('{"date": {}}', "body"), ("[]", "body"), ('"x"', "body"),
     ('{"data": [1]}', "object"), ('{"data": "x"}', "object"), ('{"data": null}', "object"),
     ('{"data": {"a": NaN}}', "NaN"), ('{"data": {"a": [Infinity]}}', "NaN"),
     ('{"data": {"a": 1e400}}', "NaN"), ('{"data": {"a": "\\u0000"}}', "NUL"),
     ('{"data": {"\\u0000": 1}}', "NUL"), ('{"data": {"a": "\\ud800"}}', "Unicode"),
     ('{"data": ' + '{"a": ' * 33 + "1" + "}" * 33 + "}", "nested"),
     ('{"data": {"a": ' + "[" * 32 + "]" * 32 + "}}", "nested"),
     ("{", "JSON"), ("", "JSON")],
)  # fmt: skip
def test_session_bad_body_is_400(client: FlaskClient, data: str, word: str) -> None:
    r = client.post("/session", headers={"X-User": "u"}, data=data, content_type="application/json")
    assert word in assert_error(r, 400)["error"]
    assert_error(client.get("/session", headers={"X-User": "u"}), 404)  # nothing stored


def test_session_non_json_body_is_400(client: FlaskClient) -> None:
    r = client.post("/session", headers={"X-User": "u"}, data="{}", content_type="text/plain")
    assert "JSON" in assert_error(r, 400)["error"]


def test_session_limits_that_still_pass(client: FlaskClient) -> None:
    ok = [
        '{"data": ' + '{"a": ' * 32 + "1" + "}" * 32 + "}",  # 32 objects deep
        '{"data": {"a": "\\\\u0000"}}',  # a backslash and "u0000": text, not NUL
        '{"data": {"a": 1e308, "b": -0.0, "c": 12345678901234567890}}',
    ]
    for data in ok:
        r = client.post(
            "/session", headers={"X-User": "u"}, data=data, content_type="application/json"
        )
        assert r.status_code == 200, (data, r.get_data(as_text=True))
    assert client.get("/session", headers={"X-User": "u"}).get_json()["data"]["c"] == (
        12345678901234567890
    )


def test_session_body_over_max_content_length_is_413(client: FlaskClient) -> None:
    r = client.post("/session", headers={"X-User": "u"}, json={"data": {"v": "x" * 40_000}})
    assert_error(r, 413)
