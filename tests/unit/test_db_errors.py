from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError

from cyberevents.db import database_unavailable


def wrapped_as_sqlalchemy_does(error: Exception, dbapi_class: type[Exception]) -> DBAPIError:
    """The chain SQLAlchemy's asyncpg dialect raises: its DBAPIError, from the adapter's error, from asyncpg's."""
    try:
        try:
            raise dbapi_class(str(error)) from error
        except Exception as adapted:
            raise DBAPIError("UPDATE events ...", {}, adapted) from adapted
    except DBAPIError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    "lost",
    [
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
)
def test_a_lost_connection_is_retried_whether_the_driver_error_comes_bare_or_wrapped(lost: Exception) -> None:
    assert database_unavailable(lost)
    assert database_unavailable(wrapped_as_sqlalchemy_does(lost, AsyncAdapt_asyncpg_dbapi.Error))


def test_a_statement_the_database_refuses_is_not_retried() -> None:
    refused = asyncpg.UniqueViolationError("duplicate key value violates unique constraint")
    assert not database_unavailable(refused)
    assert not database_unavailable(wrapped_as_sqlalchemy_does(refused, AsyncAdapt_asyncpg_dbapi.IntegrityError))
