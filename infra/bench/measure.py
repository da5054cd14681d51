"""What the benchmarks read off the machine besides time: CPU time per process (Linux /proc).

On a machine shared with other work a rate follows what the measured processes get of the CPU;
their CPU time per unit of work is what the code costs, and moves much less between runs."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far, None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The direct child processes of `pid`."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def machine_busy_seconds() -> float:
    """CPU time spent by the whole machine (every core, every process, the kernel), not idle."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def cpu_by_pid(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds so far of each process (0 where it cannot be read)."""
    return {pid: cpu_seconds(pid) or 0.0 for pid in pids}


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the processes alive at `after` used since `before`; one that started in between
    counts in full."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
