"""Child process for tests/crash/test_cleaner_crash.py: one cleaning, stopped at a step.

    python cleaner_child.py DIR NOW_MS STOP_AT [DEDUPE_BUFFER_BYTES]

Opens the log dir, runs `run_cleaner(now_ms=NOW_MS)` with a step hook that prints
`STEP <n> <name>` after each file operation of the cleaning; at step STOP_AT it prints `STOPPED`
and sleeps until the parent kills it with SIGKILL. STOP_AT -1 runs to the end and closes.
"""

from __future__ import annotations

import sys
import time

import logstore


def main() -> None:
    path, now_ms, stop_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config = {"log.cleaner.dedupe.buffer.size": int(sys.argv[4])} if len(sys.argv) > 4 else {}
    store = logstore.open(path, config, background=False)
    count = 0

    def hook(name: str) -> None:
        nonlocal count
        print(f"STEP {count} {name}", flush=True)
        if count == stop_at:
            print("STOPPED", flush=True)
            while True:
                time.sleep(60)
        count += 1

    store.log_cleaner.step_hook = hook
    store.run_cleaner(now_ms=now_ms)
    print(f"TOTAL {count}", flush=True)
    store.close()


if __name__ == "__main__":
    main()
