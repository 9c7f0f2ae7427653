"""Production serving: gunicorn with sync workers, each building its own app and store pool."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication


class _Server(BaseApplication):  # type: ignore[misc]
    """gunicorn driven from Python, so `workflow-authz serve` is the one way to run it."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from service import create_app

        return create_app()


def _child_exit(_server: Any, worker: Any) -> None:
    """Let the metrics of a worker that exited be merged, not lost or double-counted."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def run(host: str, port: int, workers: int) -> None:
    """Serve until stopped. Each worker is a process: no shared connections, no GIL contention."""
    from service import accounts
    from service.config import load_config

    metrics_dir = tempfile.mkdtemp(prefix="workflow-authz-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from service.webhooks.delivery import alongside  # imports the metrics: after the folder

    slots_dir = tempfile.mkdtemp(prefix="workflow-authz-hash-slots-")
    accounts.hash_slots.share(Path(slots_dir))  # before gunicorn forks the workers
    try:
        with alongside(load_config()):  # the delivery loop: one process beside the workers
            _Server(
                {
                    "bind": f"{host}:{port}",
                    "workers": workers,
                    "worker_class": "sync",
                    "accesslog": None,
                    "child_exit": _child_exit,
                    "graceful_timeout": 10,
                    # gunicorn 27's control socket has one default path per user: a second server on
                    # the host would take it over. Nothing here uses it.
                    "control_socket_disable": True,
                }
            ).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(slots_dir, ignore_errors=True)
