"""Real server processes for the HTTP benchmarks and their tests: spawn, wait, ask, measure, stop.

A server is `workflow-authz serve` (or any command taking the same --host/--port/--workers)
started as a subprocess on a free loopback port. Readiness is polled on /healthz, never assumed
after a fixed sleep; the process is always stopped (its whole process group if it will not go) and
its output, kept in a temporary file rather than a pipe that could fill up, is always closed.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.internals import REPO_ROOT
from bench.internals import create_admin as create_admin  # re-exported: tests start servers here
from bench.internals import create_api_key as create_api_key

HOST = "127.0.0.1"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
POLL_INTERVAL = 0.01
REQUEST_TIMEOUT = 30.0
LOG_ERRORS = ("Traceback (most recent call last)", "[ERROR]", "[CRITICAL]")
"""Server output lines that mean something went wrong: Python tracebacks, and the levels granian
(`workflow-authz serve`) and gunicorn (the floor) both print as `[ERROR] message` and
`[CRITICAL] message` (gunicorn after its timestamp)."""


class ServerError(RuntimeError):
    """A server process failed to start, died, or answered what it should not have."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, headers (lower-case names; the last value wins) and body."""

    status: int
    headers: dict[str, str]
    body: bytes
    cookies: tuple[str, ...] = ()

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Server:
    """A running server process and where it listens."""

    process: subprocess.Popen[bytes]
    port: int
    output: IO[bytes]
    started: float
    """time.perf_counter() just before the process was spawned."""

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{HOST}:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Reply:
        """Send one request on a connection of its own."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            data = response.read()
            cookies = tuple(v for k, v in response.getheaders() if k.lower() == "set-cookie")
            names = {k.lower(): v for k, v in response.getheaders()}
            return Reply(response.status, names, data, cookies)
        finally:
            conn.close()

    def post_json(self, path: str, body: Any, key: str, timeout: float = REQUEST_TIMEOUT) -> Reply:
        """POST a JSON body with an API key."""
        return self.request("POST", path, json.dumps(body).encode(), api_headers(key), timeout)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the process wrote (for error messages)."""
        self.output.flush()
        self.output.seek(0)
        text = self.output.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def workers(self) -> list[int]:
        """The pids of the server's worker processes: its children but the webhook delivery
        process that `serve` keeps beside them."""
        return [pid for pid in children(self.process.pid) if not is_deliverer(pid)]

    def worker(self) -> int:
        """The pid of the server's one worker process; ServerError if it has more or none."""
        workers = self.workers()
        if len(workers) != 1:
            raise ServerError(f"expected one worker, found {workers}")
        return workers[0]

    def log_errors(self) -> int:
        """Lines of the output that hold a traceback or an error or critical line."""
        # Opened anew through /proc: reading our own file object would move the offset the
        # still-running server writes at.
        with open(f"/proc/self/fd/{self.output.fileno()}", "rb") as log:
            return sum(any(m in raw.decode("utf-8", "replace") for m in LOG_ERRORS) for raw in log)


def wrong_answers(server: Server, key: str, items: Sequence[tuple[Any, bool]]) -> int:
    """How many POST /authorize bodies get another answer than the one expected."""
    wrong = 0
    for body, expected in items:
        reply = server.post_json("/authorize", body, key)
        wrong += reply.status != 200 or reply.json().get("allowed") is not expected
    return wrong


def batch_body(items: Sequence[tuple[Any, bool]]) -> dict[str, Any]:
    """A POST /authorize/batch body: each question (without its expected answer) with an id."""
    return {"requests": [{"id": f"q{i}", **body} for i, (body, _) in enumerate(items)]}


def wrong_batch_answers(server: Server, key: str, items: Sequence[tuple[Any, bool]]) -> int:
    """How many answers of one POST /authorize/batch differ from the expected ones; ServerError
    if the batch itself is not answered."""
    reply = server.post_json("/authorize/batch", batch_body(items), key)
    if reply.status != 200:
        raise ServerError(f"POST /authorize/batch: {reply.status} {reply.body[:300]!r}")
    answers = [r.get("allowed") for r in reply.json()["results"]]
    return sum(got is not expected for got, (_, expected) in zip(answers, items, strict=True))


@dataclass(frozen=True)
class Sample:
    """The workers' resident memory at one moment, `at` seconds after sampling started."""

    at: float
    rss: dict[int, float]
    """MiB by worker pid."""

    @property
    def total(self) -> float:
        """The workers' summed RSS in MiB."""
        return sum(self.rss.values())

    @property
    def largest(self) -> float:
        """The largest worker's RSS in MiB."""
        return max(self.rss.values(), default=0.0)


class RssSampler:
    """Every worker's resident memory, sampled in a thread of its own (beside a load)."""

    def __init__(self, server: Server, every: float) -> None:
        self.server = server
        self.every = every
        self.samples: list[Sample] = []

    def run(self, stop: threading.Event) -> None:
        """Append a sample every `every` seconds until `stop` is set."""
        started = time.monotonic()
        while True:
            rss = {}
            for pid in self.server.workers():
                try:
                    rss[pid] = rss_mib(pid)
                except (OSError, ServerError):
                    pass  # the process ended between listing and reading: a restart, seen later
            self.samples.append(Sample(time.monotonic() - started, rss))
            if stop.wait(self.every):
                return


def api_headers(key: str) -> dict[str, str]:
    """The headers of an API call: JSON body and the bearer key."""
    return {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def serve_command() -> list[str]:
    """`workflow-authz serve`: the console script beside this interpreter, else the module."""
    script = Path(sys.executable).parent / "workflow-authz"
    return (
        [str(script), "serve"]
        if script.exists()
        else [sys.executable, "-m", "service.cli", "serve"]
    )


def server_env(database_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment plus the store, a session key (PostgreSQL needs one), repo on the path."""
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["WORKFLOW_AUTHZ_DATABASE_URL"] = database_url
    env.setdefault("WORKFLOW_AUTHZ_SECRET_KEY", secrets.token_hex(32))
    env.update(extra or {})
    return env


@contextmanager
def serving(
    database_url: str,
    *,
    workers: int,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> Iterator[Server]:
    """A server on a free loopback port, ready (when `wait`), always stopped on exit."""
    port = free_port()
    argv = [*(command or serve_command()), "--host", HOST, "--port", str(port)]
    argv += ["--workers", str(workers)]
    output = tempfile.TemporaryFile()
    try:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv,
            env=server_env(database_url, env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = Server(process, port, output, started)
        try:
            if wait:
                wait_ready(server)
            yield server
        finally:
            stop(process)
    finally:
        output.close()


def wait_ready(server: Server, timeout: float = READY_TIMEOUT) -> None:
    """Poll /healthz until it answers 200; ServerError if the process dies or time runs out."""
    poll(server, lambda: server.request("GET", "/healthz", timeout=5).status == 200, timeout)


def poll(server: Server, answered: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
    """Call `answered` until it returns True; a refused connection means "not listening yet".
    ServerError if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        check_alive(server)
        try:
            if answered():
                return
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise ServerError(f"no answer after {timeout:g} s:\n{server.log_tail()}")
        time.sleep(POLL_INTERVAL)


def check_alive(server: Server) -> None:
    """ServerError with the process's last output if it has exited."""
    if server.process.poll() is not None:
        raise ServerError(f"server exited with {server.process.returncode}:\n{server.log_tail()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful stop for granian, gunicorn, uvicorn and waitress alike), then SIGKILL
    to its process group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # workers left behind by a master that died
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(STOP_TIMEOUT)


def is_deliverer(pid: int) -> bool:
    """Whether the process runs `workflow-authz deliver` (read from /proc; False once gone)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"deliver" in argv


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid`, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: split after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB, from VmRSS in /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ServerError(f"no VmRSS for process {pid}")
