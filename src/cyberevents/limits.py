"""The file descriptors DISPATCH_WORKERS needs: each request in flight holds a socket. The soft limit is raised as
far as the hard limit allows; what it cannot reach is said once, at start, with how to raise it."""

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
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if raised > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        log.info("Raised the open-file limit from %d to %d for DISPATCH_WORKERS=%d", soft, raised, workers)
    if raised < needed:
        log.warning(
            "DISPATCH_WORKERS=%d needs about %d open files, and this process may open %d (hard limit): requests "
            "past that fail with 'Too many open files'. Raise it (ulimit -n, systemd LimitNOFILE, the container "
            "runtime's nofile ulimit) or lower DISPATCH_WORKERS",
            workers,
            needed,
            raised,
        )
    return raised


def open_files_as_far_as_allowed() -> int:
    """A server of any number of clients (the reference agent): the soft RLIMIT_NOFILE raised to the hard limit.
    Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # an unlimited hard limit, above what the kernel allows a process (nr_open)
        return soft
    return hard
