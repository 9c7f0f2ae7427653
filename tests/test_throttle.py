"""Failed API authentications are limited per address and per key prefix, and never refuse a
valid key: after 20 failures in a minute the next failure is answered 429 with Retry-After, while
a valid key from the same address (or naming the same prefix) still gets its answer. The client
address comes from X-Forwarded-For only through WORKFLOW_AUTHZ_TRUSTED_PROXIES; an IPv6 client is
counted by its /64. With Redis
storage two real `serve` processes share one budget; with the storage down, counting goes on in
each process with a warning, and nothing answers 5xx."""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterator

import pytest
import redis
from flask import Flask

from bench.server import Reply, Server, create_api_key, serving, wait_ready
from service import create_app, keys
from service.config import ConfigError
from service.throttle import API_ADDRESS, API_PREFIX
from tests.conftest import IN_CI, Api

QUESTION = {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}
REDIS_URL = os.environ.get("WORKFLOW_AUTHZ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
UNREACHABLE = "redis://127.0.0.1:1/0"
"""A Redis URL nothing listens at (port 1 needs root to bind)."""
ADDRESS_LIMIT = API_ADDRESS[0].amount
PREFIX_LIMIT = API_PREFIX[0].amount


def _post(api: Api, key: str, address: str, forwarded: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    headers |= {"X-Forwarded-For": forwarded} if forwarded else {}
    response = api.client.post(
        "/authorize", json=QUESTION, headers=headers, environ_base={"REMOTE_ADDR": address}
    )
    return int(response.status_code)


def _wrong_secret(key: str) -> str:
    """The key's prefix with another secret: a guess at that one key."""
    return key.rsplit("_", 1)[0] + "_" + secrets.token_urlsafe(32)


def test_a_valid_key_is_never_refused_after_other_requests_failures(api: Api) -> None:
    failures = [_post(api, "wa_bad_guess", "10.0.0.1") for _ in range(ADDRESS_LIMIT)]
    assert failures == [401] * ADDRESS_LIMIT
    limited = api.client.post("/authorize", json=QUESTION, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert limited.status_code == 429 and limited.json["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert {_post(api, api.key, "10.0.0.1") for _ in range(20)} == {200}
    assert _post(api, "wa_bad_guess", "10.0.0.1") == 429, "the valid key reset nothing"
    assert _post(api, "wa_bad_guess", "10.0.0.2") == 401, "other addresses are unaffected"


def test_guesses_at_one_key_are_limited_from_any_address_and_the_key_still_works(
    api: Api,
) -> None:
    guesses = [_post(api, _wrong_secret(api.key), f"10.1.0.{i}") for i in range(PREFIX_LIMIT)]
    assert guesses == [401] * PREFIX_LIMIT
    assert _post(api, _wrong_secret(api.key), "10.1.1.1") == 429, "a fresh address, same prefix"
    assert _post(api, api.key, "10.1.1.1") == 200
    assert _post(api, "wa_0123abcd_" + secrets.token_urlsafe(32), "10.1.1.1") == 401


def test_an_ipv6_client_is_counted_by_its_64_network(api: Api) -> None:
    failures = [_post(api, "wa_bad_guess", f"2001:db8:1:1::{i:x}") for i in range(ADDRESS_LIMIT)]
    assert failures == [401] * ADDRESS_LIMIT
    assert _post(api, "wa_bad_guess", "2001:db8:1:1:ffff::1") == 429, "the same /64"
    assert _post(api, "wa_bad_guess", "2001:db8:1:2::1") == 401, "another /64"
    assert _post(api, "wa_bad_guess", "::ffff:192.0.2.9") == 401, "an IPv4 client, by itself"


def test_successful_requests_are_never_counted(api: Api) -> None:
    assert {_post(api, api.key, "10.0.0.3") for _ in range(30)} == {200}


def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted(api: Api) -> None:
    for i in range(ADDRESS_LIMIT):
        assert _post(api, "wa_bad_guess", "10.2.0.1", forwarded=f"192.0.2.{i}") == 401
    assert _post(api, "wa_bad_guess", "10.2.0.1", forwarded="192.0.2.250") == 429


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(store_url: str) -> None:
    app = create_app({"DATABASE_URL": store_url, "TESTING": True, "TRUSTED_PROXIES": 1})
    try:
        api = Api(app.test_client(), "")
        proxy = "10.3.0.1"  # every request comes through it
        for _ in range(ADDRESS_LIMIT):
            assert _post(api, "wa_bad_guess", proxy, forwarded="203.0.113.7, 192.0.2.1") == 401
        assert _post(api, "wa_bad_guess", proxy, forwarded="192.0.2.1") == 429
        assert _post(api, "wa_bad_guess", proxy, forwarded="192.0.2.2") == 401, "another client"
        assert _post(api, "wa_bad_guess", proxy, forwarded="192.0.2.1, 192.0.2.2") == 401, (
            "only the last hop, which the trusted proxy wrote, counts"
        )
    finally:
        app.extensions["workflow_authz.db"].dispose()


@pytest.mark.parametrize(
    "setting, value",
    [("RATE_LIMIT_STORAGE", "nonsense://somewhere"), ("TRUSTED_PROXIES", -1)],
)
def test_an_unusable_setting_stops_the_start_naming_it(
    sqlite_url: str, setting: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=f"WORKFLOW_AUTHZ_{setting}"):
        create_app({"DATABASE_URL": sqlite_url, setting: value})


def test_with_the_storage_down_failures_are_counted_in_the_process_and_nothing_is_5xx(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app({"DATABASE_URL": sqlite_url, "RATE_LIMIT_STORAGE": UNREACHABLE})
    try:
        api = Api(app.test_client(), _key(app))
        with caplog.at_level(logging.WARNING, logger="workflow_authz"):
            failures = [_post(api, "wa_bad_guess", "10.4.0.1") for _ in range(ADDRESS_LIMIT)]
            assert failures == [401] * ADDRESS_LIMIT
            assert _post(api, "wa_bad_guess", "10.4.0.1") == 429
            assert _post(api, api.key, "10.4.0.1") == 200
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, "one warning per minute, not one per request"
        assert "rate-limit storage cannot be reached" in warnings[0]
    finally:
        app.extensions["workflow_authz.db"].dispose()


def _key(app: Flask) -> str:
    with app.extensions["workflow_authz.db"].write() as conn:
        return keys.create(conn, "throttle test", "default")


# -- shared across processes: Redis -----------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> str:
    """The local Redis; mandatory in CI, skipped elsewhere when none answers."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"CI=true but Redis at {REDIS_URL} is not reachable: {exc}")
        pytest.skip(f"Redis not reachable at {REDIS_URL} (set CI=true to require it)")
    return REDIS_URL


@pytest.fixture
def two_servers(sqlite_url: str, redis_url: str) -> Iterator[tuple[Server, Server, str]]:
    """Two `serve` processes on one store and one Redis, trusting one proxy (the test), so
    each test names a client address of its own and meets no failures left by another run."""
    key = create_api_key(sqlite_url)
    env = {"WORKFLOW_AUTHZ_RATE_LIMIT_STORAGE": redis_url, "WORKFLOW_AUTHZ_TRUSTED_PROXIES": "1"}
    with (
        serving(sqlite_url, workers=1, env=env, wait=False) as a,
        serving(sqlite_url, workers=1, env=env, wait=False) as b,
    ):
        wait_ready(a)
        wait_ready(b)
        yield a, b, key


def _ask(server: Server, key: str, client: str) -> Reply:
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {key}",
        "X-Forwarded-For": client,
    }
    return server.request("POST", "/authorize", json.dumps(QUESTION).encode(), headers)


def test_two_processes_share_one_budget_through_redis(
    two_servers: tuple[Server, Server, str],
) -> None:
    a, b, key = two_servers
    client = f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::1"  # a /64 new to Redis
    half = ADDRESS_LIMIT // 2
    answers = [_ask(a, "wa_bad_guess", client).status for _ in range(half)]
    answers += [_ask(b, "wa_bad_guess", client).status for _ in range(ADDRESS_LIMIT - half)]
    assert answers == [401] * ADDRESS_LIMIT
    for server in (a, b):  # each has counted only half, yet both refuse
        refused = _ask(server, "wa_bad_guess", client)
        assert refused.status == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
        assert _ask(server, key, client).status == 200
