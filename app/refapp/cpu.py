"""Fixed CPU work for ``GET /work``."""

from __future__ import annotations

import time

# Pure-Python steps between clock reads: keeps most of the time in interpreted code
# (like a real view) rather than in the clock syscall, at ~5 us granularity.
_CHUNK = 200


def burn_cpu(ms: int) -> int:
    """Spin until this thread has used ``ms`` milliseconds of CPU; return the chunk count.

    Thread CPU time, not wall time: a CPU-throttled or GIL-waiting thread takes longer
    on the wall clock, but every request still costs the same CPU.
    """
    deadline = time.thread_time() + ms / 1000
    iterations = 0
    acc = 0
    while time.thread_time() < deadline:
        for i in range(_CHUNK):
            acc ^= i
        iterations += 1
    return iterations
