"""Every exception dynamr raises on purpose, under one root: :class:`DynamrError`.

Errors that cross the wire carry a short ``code`` (a stable string) and a message written for the user:
what was wrong and what to do. :func:`error_from_code` turns a remote error reply back into the matching
class on the client side, so callers catch the same exception whether the fault was local or remote.
"""

from __future__ import annotations


class DynamrError(Exception):
    """Root of every error dynamr raises on purpose."""

    code = "error"


class ConfigError(DynamrError):
    """A configuration value is missing, malformed or inconsistent."""

    code = "config"


class CoordinatorConflictError(ConfigError):
    """Another coordinator is using the same store (see :mod:`dynamr.mapreduce.claims`)."""

    code = "coordinator_conflict"


class ClusterNotFoundError(DynamrError):
    """No cluster address was given and no local cluster was found."""

    code = "cluster_not_found"


class AuthenticationError(DynamrError):
    """A peer failed the cluster-secret handshake (wrong or missing secret, or not a dynamr node)."""

    code = "auth"


class ProtocolError(DynamrError):
    """A peer sent bytes that are not a valid dynamr frame or message."""

    code = "protocol"


class FrameTooLargeError(ProtocolError):
    """A message is larger than the configured frame limit."""

    code = "frame_too_large"


class UnavailableError(DynamrError):
    """A node could not be reached (refused, reset or closed connection)."""

    code = "unavailable"


class ConnectFailedError(UnavailableError):
    """No connection could be opened to a node, so the request was certainly not sent."""


class DeadlineExceededError(DynamrError):
    """An operation did not finish before its deadline."""

    code = "deadline"


class QuorumError(DynamrError):
    """Too few replicas answered to satisfy the requested R or W."""

    code = "quorum"


class BadRequestError(DynamrError):
    """A request was malformed or asked for something invalid (for example R > N)."""

    code = "bad_request"


class KeyTooLargeError(BadRequestError):
    """A key is longer than the configured limit."""

    code = "key_too_large"


class ValueTooLargeError(BadRequestError):
    """A value is larger than the configured limit; large data belongs in files on the store."""

    code = "value_too_large"


class BusyError(BadRequestError):
    """A request cannot be done yet, but will be shortly (the message says what is being waited for)."""

    code = "busy"


class NotFoundError(DynamrError):
    """A file, directory or chunk does not exist."""

    code = "not_found"


class PathIsDirectoryError(BadRequestError):
    """A path names a directory where a file was expected."""

    code = "is_a_directory"


class PathNotDirectoryError(BadRequestError):
    """A path names a file where a directory was expected."""

    code = "not_a_directory"


class CorruptDataError(DynamrError):
    """Stored bytes no longer match their checksum."""

    code = "corrupt"


class DataLostError(DynamrError):
    """No replica could serve some data (every copy missing, corrupt or unreachable)."""

    code = "data_lost"


class InputLostError(DataLostError):
    """A task could not read the committed output of an earlier task: every replica of it is gone.

    Raised inside a task process; the coordinator runs the producing task again (``task``, ``attempt``
    name it) and puts the reader back in the queue without counting the failure against it.
    """

    code = "input_lost"

    def __init__(self, message: str, task: str = "", attempt: str = "") -> None:
        super().__init__(message)
        self.task = task
        self.attempt = attempt


class StorageError(DynamrError):
    """The node's storage engine failed: disk full, LMDB map full, or an I/O error."""

    code = "storage"


class RemoteError(DynamrError):
    """A remote node failed with an unexpected internal error (its log has the traceback)."""

    code = "internal"


_BY_CODE: dict[str, type[DynamrError]] = {
    cls.code: cls
    for cls in (
        DynamrError,
        ConfigError,
        CoordinatorConflictError,
        ClusterNotFoundError,
        AuthenticationError,
        ProtocolError,
        FrameTooLargeError,
        UnavailableError,
        DeadlineExceededError,
        QuorumError,
        BadRequestError,
        BusyError,
        KeyTooLargeError,
        ValueTooLargeError,
        NotFoundError,
        PathIsDirectoryError,
        PathNotDirectoryError,
        CorruptDataError,
        DataLostError,
        InputLostError,
        StorageError,
        RemoteError,
    )
}


def error_from_code(code: str, message: str) -> DynamrError:
    """Rebuild the exception a remote node reported, falling back to :class:`RemoteError`."""
    return _BY_CODE.get(code, RemoteError)(message)
