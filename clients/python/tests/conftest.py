"""Fixtures: real KvDb server processes (dotnet kvdb.dll serve --port 0), started once per session and killed at the end.

The server is the Release build of src/Cli (``dotnet build KvDb.sln -c Release``); KVDB_DLL overrides its path.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from typing import Dict, Iterator, List, Optional

import pytest

from kvdb import server_process

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
START_TIMEOUT_S = 60.0
ADMIN_KEY = "kvdb-python-tests-admin-key-0123456789"


class ServerProcess:
    """A kvdb server child process; ``address`` is what it printed ("http://127.0.0.1:PORT")."""

    def __init__(self, env_extra: Optional[Dict[str, str]] = None) -> None:
        dll = os.environ.get("KVDB_DLL") or os.path.join(REPO, "src", "Cli", "bin", "Release", "net10.0", "kvdb.dll")
        if not os.path.exists(dll):
            pytest.fail(f"{dll} is missing: build the server first (dotnet build KvDb.sln -c Release)", pytrace=False)
        env = dict(os.environ)
        env.pop("KVDB_ADMIN_KEY", None)
        env.update(env_extra or {})
        env.setdefault("DOTNET_CLI_TELEMETRY_OPTOUT", "1")
        self.stderr = tempfile.TemporaryFile()
        self.lines: List[str] = []
        self.process, address = server_process.start(dll, ["--cpu-budget", str(256 << 20)], env=env, timeout=START_TIMEOUT_S,
                                                     stderr=self.stderr, on_line=self.lines.append)
        if address is None:
            self.stop()
            self.stderr.seek(0)
            pytest.fail("kvdb did not start listening within %.0f s:\n%s\n%s" % (
                START_TIMEOUT_S, "\n".join(self.lines), self.stderr.read().decode(errors="replace")), pytrace=False)
        self.address: str = address  # type: ignore[assignment]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.stderr.close()


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """An open server (no admin key; loopback only)."""
    s = ServerProcess()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def auth_server() -> Iterator[ServerProcess]:
    """A server started with KVDB_ADMIN_KEY: every call needs a key."""
    s = ServerProcess({"KVDB_ADMIN_KEY": ADMIN_KEY})
    yield s
    s.stop()
