"""Load from wrk: a Lua script cycling pre-formatted requests, one run, and its figures parsed.

The script's done() prints one JSON line after MARKER (requests, duration, errors by kind, p50
and p99 from wrk's histogram) and, when asked, one after STATUS_MARKER counting every answer by
status over all of wrk's threads. wrk's output goes to a temporary file, never a pipe that could
fill up, and the run is waited for with an optional report of how it goes and, optionally, threads
running beside it for as long (state changes, memory samples).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

WRK = "/usr/bin/wrk"
MARKER = "WRK_RESULT "
STATUS_MARKER = "WRK_STATUSES "
SOCKET_ERRORS = ("connect", "read", "write", "timeout")


@dataclass(frozen=True)
class Load:
    """A wrk load: method, path, headers and the bodies wrk cycles through; `paths`, when given,
    holds each body's own path instead (AuthZEN names the tenant in the path)."""

    method: str
    path: str
    headers: dict[str, str]
    bodies: tuple[str, ...] = ("",)
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class WrkResult:
    """What wrk measured in one timed run (or the median of several)."""

    requests: int
    seconds: float
    errors: int
    p50_us: float
    p99_us: float

    @property
    def per_second(self) -> float:
        """Requests answered per second."""
        return self.requests / self.seconds


@dataclass(frozen=True)
class WrkFigures:
    """wrk's figures for a run, every answer's status, and its socket-level errors."""

    result: WrkResult
    statuses: dict[int, int]
    socket: dict[str, int]
    """connect, read and write errors and timeouts, as wrk counts them."""

    @property
    def server_errors(self) -> int:
        """Answers with a 5xx status."""
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def unexpected(self) -> int:
        """Other answers than 2xx and 5xx: every question is valid and a deny is a 200."""
        return sum(n for status, n in self.statuses.items() if status < 200 or 300 <= status < 500)

    @property
    def errors(self) -> int:
        """5xx, any other non-2xx answer, socket errors and timeouts."""
        return self.server_errors + self.unexpected + sum(self.socket.values())


def available() -> bool:
    """True when Debian's wrk is installed."""
    return Path(WRK).exists()


def run(
    url: str,
    load: Load,
    *,
    connections: int,
    seconds: float,
    timeout: float = 10.0,
    statuses: bool = False,
    report: Callable[[float], None] | None = None,
    beside: Sequence[Callable[[threading.Event], None]] = (),
) -> str:
    """Run wrk (1 thread) for `seconds` with the load's script, counting answers by status when
    asked; its output. Each of `beside` runs in a thread of its own meanwhile, given an event set
    when wrk has ended (and then joined); `report(elapsed)` is called about every tenth of the run
    (at least 5 s apart) while it goes."""
    argv = [shutil.which("wrk") or WRK, "--threads", "1", "--connections", str(connections)]
    argv += ["--duration", f"{max(1, round(seconds))}s", "--timeout", f"{timeout:g}s"]
    stop = threading.Event()
    threads = [threading.Thread(target=fn, args=(stop,), daemon=True) for fn in beside]
    with (
        tempfile.TemporaryDirectory(prefix="wa_wrk_") as folder,
        tempfile.TemporaryFile() as output,
    ):
        script = Path(folder) / "load.lua"
        script.write_text(lua_script(load) + (STATUS_LUA if statuses else ""), encoding="utf-8")
        argv += ["--script", str(script), url + "/"]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            _wait(process, started + seconds + 60, max(5.0, seconds / 10), started, report)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            stop.set()
            for thread in threads:
                thread.join()
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {text}")
    return text


def _wait(
    process: subprocess.Popen[bytes],
    deadline: float,
    every: float,
    started: float,
    report: Callable[[float], None] | None,
) -> None:
    """Wait for wrk to end (it stops by itself), reporting every `every` seconds."""
    while True:
        try:
            process.wait(max(0.1, min(every, deadline - time.monotonic())))
            return
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                raise RuntimeError("wrk ran a minute past its duration") from None
        if report is not None:
            report(time.monotonic() - started)


def _marked(output: str, marker: str) -> dict[str, int] | None:
    """The JSON object printed after `marker`, if any."""
    for line in output.splitlines():
        if line.startswith(marker):
            found: dict[str, int] = json.loads(line.removeprefix(marker))
            return found
    return None


def parse_wrk(output: str) -> WrkResult:
    """The figures the script's done() printed after MARKER."""
    data = _marked(output, MARKER)
    if data is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=sum(data[k] for k in (*SOCKET_ERRORS, "status")),
        p50_us=data["p50_us"],
        p99_us=data["p99_us"],
    )


def parse_figures(output: str) -> WrkFigures:
    """wrk's figures, socket errors and statuses, from a script that counted statuses."""
    summary, statuses = _marked(output, MARKER), _marked(output, STATUS_MARKER)
    if summary is None or statuses is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    return WrkFigures(
        result=parse_wrk(output),
        statuses={int(status): int(n) for status, n in statuses.items()},
        socket={k: int(summary[k]) for k in SOCKET_ERRORS},
    )


def median_result(runs: Sequence[WrkResult]) -> WrkResult:
    """All requests and errors of the runs, with the median rate, p50 and p99 of the runs."""
    rate = statistics.median(r.per_second for r in runs)
    requests = sum(r.requests for r in runs)
    return WrkResult(
        requests=requests,
        seconds=requests / rate,
        errors=sum(r.errors for r in runs),
        p50_us=statistics.median(r.p50_us for r in runs),
        p99_us=statistics.median(r.p99_us for r in runs),
    )


def lua_string(text: str) -> str:
    """A Lua string literal for ASCII text (JSON's escapes are valid Lua escapes then)."""
    if not text.isascii():
        raise ValueError("wrk bodies must be ASCII")
    return json.dumps(text)


def lua_script(load: Load) -> str:
    """A wrk script: every body pre-formatted as a request, cycled; done() prints the figures."""
    headers = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in load.headers.items())
    bodies = ",\n".join(lua_string(b) for b in load.bodies)
    if load.paths and len(load.paths) != len(load.bodies):
        raise ValueError("a load's paths, when given, are one per body")
    paths = ",\n".join(lua_string(p) for p in load.paths)
    return f"""
local bodies = {{
{bodies}
}}
local paths = {{
{paths}
}}
local headers = {{ {headers} }}
local prepared = {{}}
local n = 0

function init(args)
  for i, body in ipairs(bodies) do
    if body == "" then body = nil end
    local path = paths[i] or {lua_string(load.path)}
    prepared[i] = wrk.format({lua_string(load.method)}, path, headers, body)
  end
end

function request()
  n = n % #prepared + 1
  return prepared[n]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{MARKER}{{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


# The script above plus a count of every answer by status over all threads. done() runs in
# wrk's main Lua state, response() in each thread's: setup() keeps the threads so done() can
# read their counts.
STATUS_LUA = f"""
local counted_threads = {{}}

function setup(thread)
  table.insert(counted_threads, thread)
end

statuses = {{}}

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local summary_done = done

function done(summary, latency, requests)
  summary_done(summary, latency, requests)
  local totals = {{}}
  for _, thread in ipairs(counted_threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  local parts = {{}}
  for status, count in pairs(totals) do
    table.insert(parts, string.format('"%d": %d', status, count))
  end
  io.write('{STATUS_MARKER}{{' .. table.concat(parts, ", ") .. '}}\\n')
end
"""
