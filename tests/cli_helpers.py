"""What the CLI test files share: the `logstore` console script run as a real subprocess.

`run(*args)` runs it (`LOGSTORE_CLI` overrides which script) and fails on any traceback on
stderr; `one_error_line(p)` checks a failure is exit 1 with exactly one line on stderr, and
returns that line.
"""

from __future__ import annotations

import os
import subprocess
import sys

LOGSTORE = os.environ.get("LOGSTORE_CLI") or os.path.join(os.path.dirname(sys.executable), "logstore")


def run(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    p = subprocess.run([LOGSTORE, *args], input=stdin, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def one_error_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    return lines[0]
