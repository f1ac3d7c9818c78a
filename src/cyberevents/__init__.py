"""cyberevents: synthetic cybersecurity events, stored in PostgreSQL and dispatched to an analysis agent."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cyberevents")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
