"""The public identity of every exported name: ``ryze_async.X``, wherever ``X`` is defined.

Its own module (not ``ryze_async/__init__``) so the client core can use it without importing the
package root, which reaches every layer.
"""

from __future__ import annotations

import typing

__all__ = ["public"]

_T = typing.TypeVar("_T")


def public(obj: _T, module: str = "ryze_async") -> _T:
    """Name ``obj`` by its public path (``ryze_async.RyzeClient``): the one place each exported
    class and function gets it, at its definition (``@public``).

    Reprs, tracebacks and pickles then say ``ryze_async.X``, which stays true when the private
    module that defines it moves; pickle finds it through the lazy ``__getattr__`` of
    ``ryze_async``. ``ryze_async.testing`` names its own (``module``).
    """
    if isinstance(obj, type):
        _resolve_annotations(obj)
    obj.__module__ = module
    return obj


def _resolve_annotations(cls: type) -> None:
    """Evaluate ``cls``'s string annotations in its defining module, while it is still named
    by it: ``typing.get_type_hints`` and pydantic (a dataclass's ``Field.type``) look them up
    in ``cls.__module__``, which will be ``ryze_async``, where those names are not."""
    own = vars(cls).get("__annotations__")
    if not own:
        return
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except (NameError, TypeError):  # a name only mypy sees (TYPE_CHECKING): left as it was
        return
    cls.__annotations__ = {name: hints[name] for name in own}
    for field in vars(cls).get("__dataclass_fields__", {}).values():
        field.type = hints.get(field.name, field.type)
