"""Open files: each agent request in flight holds a socket, on both ends. The soft RLIMIT_NOFILE is raised as far
as the hard limit allows; what it cannot reach is said once, at start, with how to raise it."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

# Beyond one socket per worker: the database pools, the health server and its clients, the loop, the log, the
# embedded server's pipes, the libraries' files.
RESERVED_DESCRIPTORS = 256


def ensure_descriptors(workers: int, sockets_per_request: int = 1) -> int:
    """Raise the soft RLIMIT_NOFILE to what `workers` need, within the hard limit; warn if that is not enough.
    `sockets_per_request`: 2 with the reference agent served in this process (both ends of each connection).
    Returns the soft limit now in force."""
    needed = workers * sockets_per_request + RESERVED_DESCRIPTORS
    soft, limit = _raise_soft_limit(needed)
    if limit > soft:
        log.info("Raised the open-file limit from %d to %d for DISPATCH_WORKERS=%d", soft, limit, workers)
    if limit < needed:
        log.warning(
            "DISPATCH_WORKERS=%d needs about %d open files, and this process may open %d (hard limit): requests "
            "past that fail with 'Too many open files'. Raise it (ulimit -n, systemd LimitNOFILE, the container "
            "runtime's nofile ulimit) or lower DISPATCH_WORKERS",
            workers,
            needed,
            limit,
        )
    return limit


def raise_open_file_limit() -> int:
    """A server of any number of clients (the reference agent): as many open files as the hard limit allows.
    Returns the soft limit now in force."""
    soft, limit = _raise_soft_limit(resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    if limit > soft:
        log.info("Raised the open-file limit from %d to %d", soft, limit)
    return limit


def _raise_soft_limit(wanted: int) -> tuple[int, int]:
    """The soft limit before, and after raising it to `wanted` within the hard limit (unchanged if either is
    unlimited: Linux never allows an unlimited number of open files)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if resource.RLIM_INFINITY in (soft, wanted) or soft >= wanted:
        return soft, soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # above what the kernel allows a process (fs.nr_open)
        return soft, soft
    return soft, target
