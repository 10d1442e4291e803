"""CPU time and peak memory of a process tree, read from ``/proc`` (Linux).

A gateway is started as the leader of a new session, so its tree is every process whose
session id is the leader's pid (workers, node's helpers...), however deep. CPU counts the
children already reaped too (``cutime``/``cstime``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["TreeStats", "tree_cpu_seconds", "tree_peak_rss_mb", "tree_pids"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (which may hold spaces)."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def tree_pids(leader: int) -> list[int]:
    """The leader and every live process of its session."""
    pids = [leader]
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == leader:
            continue
        fields = _stat_fields(int(entry.name))
        # fields[3] is the session id (the 6th field of stat, counting pid and comm)
        if fields is not None and len(fields) > 3 and fields[3] == str(leader):
            pids.append(int(entry.name))
    return pids


def tree_cpu_seconds(leader: int) -> float:
    """User + system CPU seconds of the tree so far, reaped children included."""
    total = 0
    for pid in tree_pids(leader):
        fields = _stat_fields(pid)
        if fields is not None and len(fields) > 14:
            # utime, stime, cutime, cstime: the 14th to 17th fields of stat
            total += sum(int(f) for f in fields[11:15])
    return total / _TICK


def tree_peak_rss_mb(leader: int) -> float:
    """The sum of each live process's peak resident set size (``VmHWM``), in MiB: an upper
    bound of the tree's peak, exact for a single process."""
    total_kb = 0
    for pid in tree_pids(leader):
        try:
            status = (_PROC / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total_kb += int(line.split()[1])
                break
    return total_kb / 1024


class TreeStats:
    """CPU of a process tree between two reads; ``leader`` None (no gateway) reads zero."""

    def __init__(self, leader: int | None) -> None:
        self.leader = leader

    def cpu(self) -> float:
        """CPU seconds so far (0.0 without a tree)."""
        return 0.0 if self.leader is None else tree_cpu_seconds(self.leader)

    def peak_rss_mb(self) -> float | None:
        """Peak RSS so far, or None without a tree."""
        return None if self.leader is None else tree_peak_rss_mb(self.leader)
