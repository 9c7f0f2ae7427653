"""Failed authentications are rate limited per address: after 20 in a minute, 429 with
Retry-After -- even for a valid key from that address -- while other addresses are unaffected."""

from __future__ import annotations

from tests.conftest import Api

QUESTION = {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}


def _post(api: Api, key: str, address: str) -> int:
    response = api.client.post(
        "/authorize",
        json=QUESTION,
        headers={"Authorization": f"Bearer {key}"},
        environ_base={"REMOTE_ADDR": address},
    )
    return int(response.status_code)


def test_repeated_bad_keys_are_throttled_per_address(api: Api) -> None:
    assert [_post(api, "wa_bad_guess", "10.0.0.1") for _ in range(20)] == [401] * 20
    assert _post(api, "wa_bad_guess", "10.0.0.1") == 429
    assert _post(api, api.key, "10.0.0.1") == 429
    limited = api.client.post("/authorize", json=QUESTION, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert limited.json["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    assert _post(api, api.key, "10.0.0.2") == 200


def test_successful_requests_are_never_counted(api: Api) -> None:
    assert {_post(api, api.key, "10.0.0.3") for _ in range(30)} == {200}
