"""The README's receiver example (issue 13, "Done when"), run exactly as the README prints it: a
process of its own on loopback, sent a delivery signed with `standardwebhooks` whose data is an
event as GET /events shows it (both stores). It accepts the signed delivery and handles it once,
also when it comes again (a retry repeats the webhook-id); it refuses one signed with another
secret, an altered body, a malformed or missing signature, and a timestamp over 5 minutes old,
handling none of them."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import floor
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from standardwebhooks import Webhook

from service.webhooks.endpoints import new_secret
from tests.conftest import Api, complete

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- receiver example: tests/test_webhook_receiver.py extracts the python block below -->"
STARTUP_SECONDS = 20


def readme_receiver() -> str:
    """The python block that follows the marker in the README, as printed."""
    text = README.read_text()
    assert text.count(MARKER) == 1, "the README marks its receiver example once"
    match = re.match(r"\s*```python\n(.*?)\n```", text.split(MARKER, 1)[1], re.S)
    assert match, "a python block follows the marker"
    return match.group(1) + "\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Receiver:
    url: str
    secret: str
    output: Path

    def post(self, body: bytes, headers: dict[str, str]) -> int:
        request = Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urlopen(request, timeout=10) as answer:
                status: int = answer.status
        except HTTPError as error:
            error.close()
            status = error.code
        return status

    def handled(self) -> list[str]:
        return self.output.read_text().splitlines()


def wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until the receiver accepts a connection; fail at once if it exits."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pass
        try:  # waits on the process, not a clock: returns early if it died
            process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"the receiver exited:\n{log.read_text()}")
    raise RuntimeError(f"the receiver did not listen within {STARTUP_SECONDS}s")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    script = tmp_path / "receiver.py"
    script.write_text(readme_receiver())
    secret, port = new_secret(), free_port()
    output = tmp_path / "receiver.out"
    env = os.environ | {"WEBHOOK_SECRET": secret, "PORT": str(port)}
    with output.open("wb") as out, (tmp_path / "receiver.err").open("wb") as err:
        process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=out, stderr=err)
    try:
        wait_until_listening(port, process, tmp_path / "receiver.err")
        yield Receiver(f"http://127.0.0.1:{port}/hooks/workflow", secret, output)
    finally:
        process.terminate()
        process.wait(timeout=10)


def an_event(api: Api) -> dict[str, Any]:
    """The first event of the feed, as GET /events shows it."""
    complete(api, "maths-7b-t1")
    events: list[dict[str, Any]] = api.get("/events").json["events"]
    assert events and events[0]["id"] == "evt_default_1"
    return events[0]


def signed(
    event: dict[str, Any], secret: str, at: datetime | None = None
) -> tuple[bytes, dict[str, str]]:
    """A delivery of the event as the issue specifies it, signed with `standardwebhooks`."""
    at = at or datetime.now(UTC)
    body = json.dumps({"type": "assessment.visibility", "timestamp": event["at"], "data": event})
    return body.encode(), {
        "content-type": "application/json",
        "webhook-id": event["id"],
        "webhook-timestamp": str(floor(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event["id"], at, body),
    }


def test_the_readme_receiver_handles_a_signed_delivery_once_however_often_it_comes(
    receiver: Receiver, api: Api
) -> None:
    event = an_event(api)
    body, headers = signed(event, receiver.secret)
    assert receiver.post(body, headers) == 204
    again_body, again = signed(event, receiver.secret)  # a retry: same id, a new timestamp
    assert receiver.post(again_body, again) == 204
    assert receiver.handled() == [
        f"evt_default_1: external systems may now see maths-7b-t1 ({event['phase']})"
    ]


def test_the_readme_receiver_accepts_either_signature_during_a_rotation(
    receiver: Receiver, api: Api
) -> None:
    event = an_event(api)
    body, headers = signed(event, new_secret())  # the new secret the receiver does not hold yet
    _, old = signed(event, receiver.secret)
    headers["webhook-signature"] += " " + old["webhook-signature"]
    assert receiver.post(body, headers) == 204
    assert len(receiver.handled()) == 1


def test_the_readme_receiver_refuses_forged_altered_stale_and_malformed_deliveries(
    receiver: Receiver, api: Api
) -> None:
    event = an_event(api)
    forged_body, forged = signed(event, new_secret())
    body, headers = signed(event, receiver.secret)
    altered = body.replace(b'"visible": true', b'"visible": false')
    assert altered != body
    stale_body, stale = signed(event, receiver.secret, datetime.now(UTC) - timedelta(minutes=6))
    refused = [
        (forged_body, forged),
        (altered, headers),
        (stale_body, stale),
        (body, headers | {"webhook-signature": "not a signature"}),
        (body, headers | {"webhook-signature": "v1,%%%"}),
        (body, {k: v for k, v in headers.items() if k != "webhook-signature"}),
    ]
    for refused_body, refused_headers in refused:
        assert receiver.post(refused_body, refused_headers) == 400, refused_headers
    assert receiver.handled() == []
    assert receiver.post(body, headers) == 204, "the genuine one still passes after them all"


def test_the_readme_receiver_is_lint_clean_python(tmp_path: Path) -> None:
    script = tmp_path / "receiver.py"
    script.write_text(readme_receiver())
    ruff = Path(sys.executable).parent / "ruff"
    for args in (["check", "--select", "B,E,F,I,UP,W"], ["format", "--check"]):
        done = subprocess.run([ruff, *args, script], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
