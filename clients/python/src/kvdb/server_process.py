"""Starting a local ``kvdb serve`` child process and reading the address it prints (tests, benches, examples)."""

from __future__ import annotations

import queue
import subprocess
import threading
from typing import IO, Callable, Dict, List, Optional, Sequence, Tuple

LISTENING = "kvdb listening on "


def start(dll: str, args: Sequence[str] = (), env: Optional[Dict[str, str]] = None, timeout: float = 90,
          stderr: "Optional[IO[bytes] | int]" = subprocess.DEVNULL,
          on_line: Optional[Callable[[str], None]] = None) -> "Tuple[subprocess.Popen[str], Optional[str]]":
    """Runs ``dotnet DLL serve --port 0 --http-port -1 ARGS`` and waits at most ``timeout`` seconds for its
    "kvdb listening on ADDRESS" line. Returns the process and the address, or None when none came (the caller stops
    the process and reports). Every stdout line goes to ``on_line`` as it arrives."""
    cmd: List[str] = ["dotnet", dll, "serve", "--port", "0", "--http-port", "-1", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env, text=True)
    found: "queue.Queue[Optional[str]]" = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if on_line is not None:
                on_line(line.rstrip("\n"))
            if line.startswith(LISTENING):
                found.put(line[len(LISTENING):].strip())
        found.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        return proc, found.get(timeout=timeout)
    except queue.Empty:
        return proc, None
