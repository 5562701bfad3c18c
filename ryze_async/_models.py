"""Wire models of what comes back: tolerant results (the strict request bodies are in
``_bodies``). They depend on nothing of ours, so ``_exceptions`` may build one."""

from __future__ import annotations

import ast
import inspect
import sys
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ._public import public

__all__ = ["CallResult", "RateLimitInfo"]

_M = TypeVar("_M", bound=BaseModel)


class _ResponseModel(BaseModel):
    # Tolerant: the server may add fields at any time; a new field must not break callers.
    # Built on first use (defer_build): importing the package does not pay for the schema.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)


def _described(cls: type[_M]) -> type[_M]:
    """Each field's description from its attribute docstring, as ``use_attribute_docstrings``
    gives it (the schema, ``model_fields``). That option finds a class's source by walking the
    call stack and matching every loaded module, per class: about 4 % of a one-number CLI
    campaign's start-up CPU (issue 18). Here this file is parsed once; the schema, deferred,
    is built after."""
    try:
        tree = ast.parse(inspect.getsource(sys.modules[__name__]))
    except (OSError, TypeError, SyntaxError):  # no source (a frozen app): no descriptions
        return cls
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    for field, doc in zip(node.body, node.body[1:], strict=False):
        if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
                and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)):
            info = cls.model_fields[field.target.id]
            if info.description is None:
                info.description = inspect.cleandoc(doc.value.value)
    return cls


@public
@_described
class RateLimitInfo(_ResponseModel):
    """The ``X-RateLimit-*`` headers of a response."""

    limit: int | None = None
    """Requests allowed in the current period (``X-RateLimit-Limit``)."""
    remaining: int | None = None
    """Requests still available in it (``X-RateLimit-Remaining``)."""
    reset: float | None = None
    """Unix time, on the server's clock, when the counter resets (``X-RateLimit-Reset``)."""


@public
@_described
class CallResult(_ResponseModel):
    """A placed call. ``success`` says the call was placed, not that it was answered."""

    success: bool
    """True when the server placed the call."""
    message: str = ""
    """The server's message, e.g. ``"Audio call placed"``."""
    call_id: str | None = Field(default=None, alias="callId")
    """The call's id, assigned by WhatsApp."""
    number: str | None = None
    """The number the server dialled."""
    duration: int | None = None
    """Seconds the phone rings (fake calls only)."""
    status: int = 200
    """The HTTP status of the answer."""
    rate_limit: RateLimitInfo | None = None
    """The quota as the server reported it in this answer."""
