"""Descriptors that give ``MailboxService`` flat, typed methods without writing a signature twice.

``command(Submit)`` makes ``service.submit(...)`` take exactly the arguments of the ``Submit``
model (positional and keyword, with their defaults and docs), build it, and run it;
``delegate("queries", MailboxQueries.get_run)`` forwards ``service.get_run`` to a component.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar, overload

from run_mailbox.domain.commands import Command

P = ParamSpec("P")
R = TypeVar("R")


class Executes(Protocol):
    def execute(self, command: Command[Any]) -> Any: ...


class command(Generic[P, R]):
    def __init__(self, model: Callable[P, Command[R]]) -> None:
        self.model = model
        self.__doc__ = model.__doc__
        self.__signature__ = inspect.signature(model).replace(return_annotation=getattr(model, "result_type", None))
        self.name = ""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: Executes, owner: type[Any]) -> Callable[P, R]: ...

    def __get__(self, obj: Executes | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        model = self.model

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            result: R = obj.execute(model(*args, **kwargs))
            return result

        run.__name__ = run.__qualname__ = self.name
        run.__doc__ = self.__doc__
        run.__signature__ = self.__signature__  # type: ignore[attr-defined]
        return run


class delegate(Generic[P, R]):
    def __init__(self, component: str, method: Callable[Concatenate[Any, P], R]) -> None:
        self.component = component
        self.method_name = method.__name__
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: object, owner: type[Any]) -> Callable[P, R]: ...

    def __get__(self, obj: object | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        return getattr(getattr(obj, self.component), self.method_name)
