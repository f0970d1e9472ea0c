"""The author's API inside a step: the `Process` handle and its select builder.

A step method only *declares* (select, go, close, make_chan, call, finish, on_commit); the engine
applies the declarations after the method returns, in the step's transaction.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from slct_workflows import semantics
from slct_workflows.definitions import split_method
from slct_workflows.errors import DeclarationError
from slct_workflows.policy import ChannelPolicy
from slct_workflows.values import MAX_CAPACITY, NAME_MAX, NAME_RULE, ValueError_, is_capacity, is_name, to_json


@dataclass
class GoDecl:
    name: str
    method: str
    arg: Any


@dataclass
class CallDecl:
    definition: str
    input: Any
    id: str | None
    target: str = ""


@dataclass
class CommitDecl:
    func: str
    args: list
    kwargs: dict


@dataclass
class StepDecls:
    cases: list[semantics.Case] | None = None
    gos: list[GoDecl] = field(default_factory=list)
    closes: list[str] = field(default_factory=list)
    made: list[tuple[str, int, ChannelPolicy]] = field(default_factory=list)
    finished: bool = False
    output: Any = None
    call: CallDecl | None = None
    on_commit: list[CommitDecl] = field(default_factory=list)
    open_cases: int = 0  # cases begun with recv()/send()/... but never given .to()


class Process:
    """The handle a step method receives as `p`."""

    def __init__(
        self, *, process_id: str, definition: str, goroutine: str, method: str, instance: Any,
        now: datetime, closed: bool = False, existing_goroutines: set[str] | None = None,
    ) -> None:
        self.process_id = process_id
        self.definition = definition
        self.goroutine = goroutine
        self.method = method
        self.closed = closed
        self._now = now
        self._instance = instance
        self._taken = set(existing_goroutines or ()) | {goroutine}
        self.decls = StepDecls()

    def __repr__(self) -> str:
        return f"<Process {self.definition} {self.process_id} goroutine={self.goroutine} method={self.method}>"

    # -- for helpers that check declarations (slack_integration.slack, yours) --------------------
    def declaration_error(self, message: str) -> DeclarationError:
        """A DeclarationError naming this process, goroutine and method: raise it from a helper
        that checks what a step declares (it fails the process at once, with no retries)."""
        return DeclarationError(
            f"process {self.definition} {self.process_id}, goroutine {self.goroutine}, "
            f"method {self.method}: {message}"
        )

    def _method_name(self, method: Callable[..., Any] | str, *, kind: str | None) -> str:
        """Check a `.to()`/`go()` target: a step method of this same process object."""
        if isinstance(method, str):
            name = method
        else:
            owner = getattr(method, "__self__", None)
            name = getattr(method, "__name__", repr(method))
            if owner is not self._instance:
                raise self.declaration_error(f"{name} is not a method of this process ({type(self._instance).__name__})")
        parts = split_method(name)
        if parts is None:
            raise self.declaration_error(f"{name!r} does not follow the {{Goroutine}}_{{Status}} naming rule")
        if not callable(getattr(type(self._instance), name, None)):
            raise self.declaration_error(f"{type(self._instance).__name__} has no method {name!r}")
        if kind is not None and parts[0] != kind:
            raise self.declaration_error(
                f"{name} belongs to goroutine {parts[0]}, but a select of goroutine {self.goroutine} "
                f"can only continue in {kind}_* methods"
            )
        return name

    def _json(self, value: Any, what: str) -> Any:
        try:
            return to_json(value)
        except ValueError_ as exc:
            raise self.declaration_error(f"{what} is not JSON: {exc}") from None

    def _channel(self, name: Any) -> str:
        if not is_name(name):
            raise self.declaration_error(f"channel name must be {NAME_RULE}, got {name!r}")
        return name

    def _kind(self) -> str:
        return self.goroutine.split("#", 1)[0]

    # -- the API -------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The step's time (the controllable clock in tests)."""
        return self._now

    def select(self) -> "Select":
        if self.decls.cases is not None or self.decls.call is not None:
            raise self.declaration_error("only one select (or call) per step")
        if self.decls.finished:
            raise self.declaration_error("select() after finish()")
        self.decls.cases = []
        return Select(self)

    def go(self, method: Callable[..., Any] | str, arg: Any = None) -> str:
        """Start goroutine `X` at `method` (`X_Start` usually). Returns the goroutine's name."""
        name = self._method_name(method, kind=None)
        kind = split_method(name)[0]
        goroutine, n = kind, 1
        while goroutine in self._taken:
            n += 1
            goroutine = f"{kind}#{n}"
        self._taken.add(goroutine)
        self.decls.gos.append(GoDecl(goroutine, name, self._json(arg, f"argument of go({name})")))
        return goroutine

    def finish(self, output: Any = None) -> None:
        if self.decls.cases is not None or self.decls.call is not None:
            raise self.declaration_error("finish() in a step that already declared a select or call")
        self.decls.finished = True
        self.decls.output = self._json(output, "finish() output")

    def make_chan(self, capacity: int = 0, name: str | None = None, *, policy: ChannelPolicy | None = None) -> str:
        """Make a channel (buffered when capacity > 0). It is private unless `policy` opens it
        (`ChannelPolicy.open()`, `ChannelPolicy.restricted(permission=..., group=...)`): steps
        send into it, nobody from outside does."""
        if not is_capacity(capacity):
            raise self.declaration_error(f"channel capacity must be an integer from 0 to {MAX_CAPACITY}, got {capacity!r}")
        if policy is not None and not isinstance(policy, ChannelPolicy):
            raise self.declaration_error(f"make_chan(policy=...) takes a ChannelPolicy, got {policy!r}")
        chan = self._channel(name) if name is not None else f"chan-{uuid.uuid4().hex}"
        self.decls.made.append((chan, capacity, policy or ChannelPolicy.private()))
        return chan

    def close(self, channel: str) -> None:
        self.decls.closes.append(self._channel(channel))

    def call(self, definition: str, input: Any = None, id: str | None = None) -> "CallBuilder":
        if self.decls.cases is not None or self.decls.call is not None:
            raise self.declaration_error("only one select (or call) per step")
        if self.decls.finished:
            raise self.declaration_error("call() after finish()")
        # The child's result channel is `result-<id>`: the id must leave room for the prefix.
        if id is not None and not (is_name(id) and is_name(f"result-{id}")):
            raise self.declaration_error(f"child process id must be {NAME_RULE}, at most {NAME_MAX - 7} long, got {id!r}")
        self.decls.call = CallDecl(definition, self._json(input, "call() input"), id)
        return CallBuilder(self)

    def on_commit(self, func: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> None:
        """Run `func(*args, **kwargs)` once, from an RQ job, only if this step commits."""
        path = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
        if "<" in path:
            raise self.declaration_error(f"on_commit needs a module-level function, got {path}")
        self.decls.on_commit.append(
            CommitDecl(path, self._json(list(args), "on_commit args"), self._json(kwargs, "on_commit kwargs"))
        )


class Select:
    """`p.select().recv("a").to(self.Main_Got).after(timedelta(hours=1)).to(self.Main_Late)`"""

    def __init__(self, p: Process) -> None:
        self._p = p

    def _case(self, **kw: Any) -> "CaseBuilder":
        cases = self._p.decls.cases
        if cases and cases[-1].kind == semantics.DEFAULT:
            raise self._p.declaration_error("default() must be the last case of a select")
        self._p.decls.open_cases += 1
        return CaseBuilder(self, kw)

    def recv(self, channel: str) -> "CaseBuilder":
        return self._case(kind=semantics.RECV, channel=self._p._channel(channel))

    def send(self, channel: str, value: Any) -> "CaseBuilder":
        return self._case(
            kind=semantics.SEND, channel=self._p._channel(channel),
            value=self._p._json(value, f"value sent on {channel!r}"),
        )

    def after(self, delay: timedelta | float | int) -> "CaseBuilder":
        if isinstance(delay, (int, float)) and not isinstance(delay, bool):
            delay = timedelta(seconds=delay)
        if not isinstance(delay, timedelta):
            raise self._p.declaration_error(f"after() needs a timedelta or seconds, got {delay!r}")
        return self._case(kind=semantics.TIMER, deadline=self._p.now() + delay)

    def at(self, when: datetime) -> "CaseBuilder":
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise self._p.declaration_error(f"at() needs a timezone-aware datetime, got {when!r}")
        return self._case(kind=semantics.TIMER, deadline=when)

    def default(self) -> "CaseBuilder":
        return self._case(kind=semantics.DEFAULT)


class CaseBuilder:
    def __init__(self, select: Select, fields: dict[str, Any]) -> None:
        self._select = select
        self._fields = fields

    def to(self, method: Callable[..., Any] | str) -> Select:
        p = self._select._p
        target = p._method_name(method, kind=p._kind())
        p.decls.cases.append(semantics.Case(target=target, **self._fields))
        p.decls.open_cases -= 1
        return self._select


class CallBuilder:
    def __init__(self, p: Process) -> None:
        self._p = p

    def to(self, method: Callable[..., Any] | str) -> None:
        self._p.decls.call.target = self._p._method_name(method, kind=self._p._kind())
