"""How a workflow lives in the store and on the streams: names, fields and messages.

A workflow is the job ``mf:<workflow_id>`` with fields ``status``, ``workflow_name``, ``task_queue``,
``args``, ``run``, ``gen`` (bumped by every replay that dispatches, for optimistic concurrency),
``started_at``, ``parent``, and the history fields ``d:<seq>``, ``h:<seq>``, ``e:<seq>:<n>``.
Workflow tasks travel on stream ``mf.wf.<queue>``, activities on ``mf.act.<queue>``; the outcome
is announced on sub topic ``hm.wf.<workflow_id>``.
"""

from __future__ import annotations

import re
import time
import traceback
from typing import Any

from hotmesh.engine.engine import headers_for
from hotmesh.errors import ValidationError
from hotmesh.providers import JSONValue, Message

GROUP = "mf"
RUNNING, COMPLETED, FAILED, INTERRUPTED = "running", "completed", "failed", "interrupted"
FINAL = (COMPLETED, FAILED, INTERRUPTED)

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")
_HISTORY = re.compile(r"^(?:[dh]:\d+|e:\d+:\d+)$")


def check_queue(value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValidationError(f"invalid task_queue {value!r}: use 1-200 letters, digits, '_', '.', '-'")
    return value


def check_workflow_id(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 500 or any(c.isspace() for c in value):
        raise ValidationError(f"invalid workflow_id {value!r}: a non-empty string without spaces, at most 500 characters")
    return value


def check_workflow_name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValidationError(f"invalid workflow name {value!r}: use letters, digits, '_', '.', '-'")
    return value


def job_id(workflow_id: str) -> str:
    return f"mf:{workflow_id}"


def workflow_stream(queue: str) -> str:
    return f"mf.wf.{queue}"


def activity_stream(queue: str) -> str:
    return f"mf.act.{queue}"


def result_topic(workflow_id: str) -> str:
    return f"hm.wf.{workflow_id}"


def registry_key(queue: str) -> str:
    return f"mf:queue:{queue}"


def is_history_field(name: str) -> bool:
    return _HISTORY.match(name) is not None


def run_message(queue: str, workflow_id: str, kind: str = "run", **extra: JSONValue) -> Message:
    """A message asking a worker of ``queue`` to replay (and advance) the workflow."""
    return Message(stream=workflow_stream(queue), body={"kind": kind, "workflow_id": workflow_id, **extra}, headers=headers_for())


def describe_exception(exc: BaseException) -> dict[str, JSONValue]:
    """Type, message and traceback text of an exception, as JSON (the remote error)."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return {"type": name, "message": str(exc), "traceback": "".join(traceback.format_exception(exc))}


def ok(value: JSONValue, kind: str) -> dict[str, JSONValue]:
    return {"ok": True, "value": value, "kind": kind, "at": time.time()}


def failed(error: dict[str, JSONValue], kind: str) -> dict[str, JSONValue]:
    return {"ok": False, "error": error, "kind": kind, "at": time.time()}


def error_matches(error: dict[str, JSONValue], names: tuple[str, ...]) -> bool:
    """Whether a remote error's type is one of ``names`` (short or qualified class names)."""
    kind = str(error.get("type", ""))
    short = kind.rsplit(".", 1)[-1]
    return kind in names or short in names


def history_events(job: dict[str, Any]) -> list[dict[str, JSONValue]]:
    """The workflow's durable calls in order, each with its command, outcome and failed attempts."""
    seqs = sorted({int(k.split(":")[1]) for k in job if re.match(r"^[dh]:\d+$", k)})
    events: list[dict[str, JSONValue]] = []
    for seq in seqs:
        dispatched = job.get(f"d:{seq}") or {}
        outcome = job.get(f"h:{seq}")
        attempts: list[JSONValue] = []
        n = 1
        while isinstance(job.get(f"e:{seq}:{n}"), dict):
            attempts.append(job[f"e:{seq}:{n}"])
            n += 1
        event: dict[str, JSONValue] = {
            "seq": seq,
            "type": dispatched.get("type"),
            "key": dispatched.get("key"),
            "command": dispatched.get("cmd"),
            "dispatched_at": dispatched.get("at"),
            "status": "pending" if outcome is None else ("completed" if outcome.get("ok") else "failed"),
            "failed_attempts": attempts,
        }
        if isinstance(outcome, dict):
            event["completed_at"] = outcome.get("at")
            if outcome.get("ok"):
                event["result"] = outcome.get("value")
            else:
                event["error"] = outcome.get("error")
        events.append(event)
    return events
