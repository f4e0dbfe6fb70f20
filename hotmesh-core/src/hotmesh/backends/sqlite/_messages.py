"""Message rows shared by the stream and the store's outbox (Store rule 6)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from hotmesh.backends.sqlite._notify import notifier_for
from hotmesh.errors import ValidationError
from hotmesh.providers import JSONValue, Message, dumps, loads


def encode_message(message: Message, path: str = "message") -> tuple[str, str, str]:
    """Validate a message and return (stream, body JSON, headers JSON) before any write."""
    if not isinstance(message, Message):
        raise ValidationError(f"{path} must be a hotmesh.providers.Message, got {type(message)!r}")
    if not isinstance(message.stream, str) or not message.stream:
        raise ValidationError(f"{path}.stream must be a non-empty string")
    if not isinstance(message.body, Mapping):
        raise ValidationError(f"{path}.body must be a mapping")
    for key, value in message.headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationError(f"{path}.headers must map strings to strings ({key!r})")
    body = dumps(dict(message.body), f"{path}.body")
    headers = dumps(dict(message.headers), f"{path}.headers")
    return message.stream, body, headers


def encode_messages(messages: Sequence[Message], path: str = "messages") -> list[tuple[str, str, str]]:
    """Validate all messages first: bad input never half-writes."""
    return [encode_message(m, f"{path}[{i}]") for i, m in enumerate(messages)]


def decode_message(stream: str, body: str, headers: str) -> Message:
    """Rebuild a Message from its row."""
    decoded_body: Any = loads(body)
    decoded_headers: Any = loads(headers)
    return Message(stream=stream, body=decoded_body, headers=decoded_headers)


def insert_messages(
    conn: sqlite3.Connection, ns: str, rows: Sequence[tuple[str, str, str]]
) -> list[str]:
    """Append encoded messages inside the caller's transaction; returns their ids in order."""
    ids: list[str] = []
    for stream, body, headers in rows:
        cursor = conn.execute(
            "INSERT INTO hm_messages (ns, stream, body, headers) VALUES (?, ?, ?, ?)",
            (ns, stream, body, headers),
        )
        ids.append(str(cursor.lastrowid))
    return ids


def notify_streams(path: str, ns: str, rows: Sequence[tuple[str, str, str]]) -> None:
    """After commit: wake this process's readers blocked on the streams written (Stream rule 6)."""
    for stream in {row[0] for row in rows}:
        notifier_for(path, ns, "stream:" + stream).notify()


def messages_to_json(messages: Sequence[Message]) -> str:
    """The step record of a transition's messages (Store rule 3 re-emits them)."""
    encoded: list[JSONValue] = [
        {"stream": m.stream, "body": dict(m.body), "headers": dict(m.headers)} for m in messages
    ]
    return dumps(encoded)


def messages_from_json(text: str) -> tuple[Message, ...]:
    """Inverse of :func:`messages_to_json`."""
    items: Any = loads(text)
    return tuple(
        Message(stream=item["stream"], body=item["body"], headers=item["headers"]) for item in items
    )
