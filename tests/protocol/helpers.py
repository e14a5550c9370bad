"""Small helpers shared by the codec tests."""

from __future__ import annotations

from typing import TypeVar

from sip2server.protocol import Message, decode

M = TypeVar("M", bound=Message)


def decode_as(payload: bytes, message_type: type[M], *, encoding: str = "utf-8") -> M:
    """Decode `payload` and check that it is a `message_type`."""
    message = decode(payload, encoding=encoding).message
    assert isinstance(message, message_type)
    return message
