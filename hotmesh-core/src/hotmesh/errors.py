"""The one error hierarchy of HotMesh.

Every error raised on purpose by hotmesh or by a provider derives from :class:`HotMeshError`, so a
caller can catch one class. The tree::

    HotMeshError
    ├── ConfigError                  bad configuration: URL, option, role mix
    │   └── ProviderNotFoundError    no installed provider for a scheme/name
    ├── ValidationError              bad input to an API call (topic, ttl, cron, ...)
    │   ├── SerializationError       a value is not JSON-serializable (names the path)
    │   └── PayloadTooLargeError     a value is over max_payload_bytes (names the limit)
    ├── CapabilityNotSupportedError  a provider was asked for something it does not declare
    ├── ProviderError                a backend failed or is unreachable (URL shown without password)
    ├── DuplicateJobError            a job / workflow id already exists
    │   └── DuplicateWorkflowError
    ├── JobNotFoundError
    │   └── WorkflowNotFoundError
    ├── RemoteError                  a remote callback/workflow failed (type, message, traceback)
    │   ├── WorkflowFailed
    │   └── ActivityFailed           an activity failed after its retry policy was spent
    ├── NonDeterminismError
    │   └── WorkflowSandboxError     workflow code tried I/O, threads or a non-durable timer
    ├── TimeoutError                 also an instance of the builtin TimeoutError
    └── InterruptedError             a job was interrupted

Errors from a driver are translated at one seam per backend and keep the driver's error as
``__cause__``. Messages never contain passwords: use :func:`redact_url` on any URL shown.
"""

from __future__ import annotations

import builtins
import re

__all__ = [
    "ActivityFailed",
    "CapabilityNotSupportedError",
    "ConfigError",
    "DuplicateJobError",
    "DuplicateWorkflowError",
    "HotMeshError",
    "InterruptedError",
    "JobNotFoundError",
    "NonDeterminismError",
    "PayloadTooLargeError",
    "ProviderError",
    "ProviderNotFoundError",
    "RemoteError",
    "SerializationError",
    "TimeoutError",
    "ValidationError",
    "WorkerLostError",
    "WorkflowFailed",
    "WorkflowNotFoundError",
    "WorkflowSandboxError",
    "redact_url",
]

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@]*)(?::[^@/]*)?@")
# Any ":secret@" left, even in malformed URLs such as "redis:/user:secret@host".
_ANY_USERINFO_PASSWORD = re.compile(r":[^:@/\s]+@")
_PASSWORD_PARAM = re.compile(r"(?i)((?:password|passwd|pwd|token|secret)=)[^&;\s]*")


def redact_url(url: str) -> str:
    """Return *url* with any password (userinfo or query parameter) replaced by ``***``.

    Every error and log line that shows a URL goes through this, so that credentials given in a
    connection string never leak.
    """

    def _userinfo(match: re.Match[str]) -> str:
        user = match.group("user")
        has_password = ":" in match.group(0)[len(match.group("scheme")) :]
        return f"{match.group('scheme')}{user}{':***' if has_password else ''}@"

    redacted = _USERINFO.sub(_userinfo, url)
    redacted = _ANY_USERINFO_PASSWORD.sub(":***@", redacted)
    return _PASSWORD_PARAM.sub(r"\1***", redacted)


class HotMeshError(Exception):
    """Root of every error HotMesh raises on purpose."""

    #: Whether retrying the same operation may succeed (the engine reads this).
    retryable: bool = False


class ConfigError(HotMeshError):
    """The configuration is wrong: a malformed URL, a wrong option, an impossible role mix."""


class ProviderNotFoundError(ConfigError):
    """No installed provider serves the requested URL scheme or name for a role."""


class ValidationError(HotMeshError, ValueError):
    """An argument to a public call is invalid; raised before anything is written."""


class PayloadTooLargeError(ValidationError):
    """An argument, result or signal is bigger than the configured payload limit (named)."""


class SerializationError(ValidationError):
    """A value is not JSON-serializable.

    Attributes:
        path: where inside the value the offending item sits, e.g. ``args[0]["when"]``.
    """

    def __init__(self, message: str, *, path: str = "$") -> None:
        super().__init__(message)
        self.path = path


class CapabilityNotSupportedError(HotMeshError):
    """A provider was asked for an operation whose capability it does not declare."""

    def __init__(self, provider: str, capability: str, hint: str = "") -> None:
        text = f"{provider} does not support {capability!s}"
        super().__init__(f"{text}. {hint}" if hint else text)
        self.provider = provider
        self.capability = capability


class ProviderError(HotMeshError):
    """A backend failed or could not be reached. The message names the URL without password."""

    retryable = True


class DuplicateJobError(HotMeshError):
    """A job with this id already exists."""


class DuplicateWorkflowError(DuplicateJobError):
    """A workflow with this id is already running."""


class JobNotFoundError(HotMeshError, LookupError):
    """No job with this id exists (or it has expired)."""


class WorkflowNotFoundError(JobNotFoundError):
    """No workflow with this id exists (or it has expired)."""


class RemoteError(HotMeshError):
    """A callback or workflow failed in another process.

    Attributes:
        remote_type: the qualified name of the exception class raised remotely.
        remote_message: its message.
        remote_traceback: the formatted traceback text from the remote process.
    """

    def __init__(
        self,
        remote_type: str,
        remote_message: str,
        remote_traceback: str = "",
    ) -> None:
        super().__init__(f"{remote_type}: {remote_message}")
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback


class WorkflowFailed(RemoteError):
    """A workflow ended in failure; carries the remote error's type, message and traceback."""


class ActivityFailed(RemoteError):
    """Raised inside a workflow: an activity failed for good (retries spent or non-retryable).

    ``attempts`` holds every attempt's error (type, message, traceback) in order.
    """

    def __init__(
        self,
        remote_type: str,
        remote_message: str,
        remote_traceback: str = "",
        *,
        attempts: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(remote_type, remote_message, remote_traceback)
        self.attempts = attempts or []


class NonDeterminismError(HotMeshError):
    """Workflow code made a different durable call than its recorded history at some index."""


class WorkflowSandboxError(NonDeterminismError):
    """Workflow code did something that cannot replay (I/O, threads, ``asyncio.sleep``)."""


class TimeoutError(HotMeshError, builtins.TimeoutError):
    """An operation did not finish within its timeout."""

    retryable = True


class InterruptedError(HotMeshError):
    """The job was interrupted before it finished."""


class WorkerLostError(HotMeshError):
    """A task was delivered as often as its retry policy allows and never finished: each worker
    that took it died, or ran past the visibility timeout, before it could record an outcome.
    The task is dead-lettered as a poison message and its workflow or call fails with this error
    instead of killing worker after worker (catalogue M-3)."""
