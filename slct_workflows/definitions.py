"""The registry of process definitions. `register` only records; the engine reads back from here."""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from slct_workflows.errors import NotFound
from slct_workflows.policy import ChannelPolicy
from slct_workflows.values import NAME_RULE, is_name

METHOD_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9]*)_([A-Za-z0-9_]+)$")
T = TypeVar("T")

# Set by the RQ worker (slct_workflows.worker) at start: an unknown definition there most often
# means the worker runs older code than the web server that accepted the process.
in_worker = False
STALE_CODE_HINT = ("; this worker may be running older code than the web server that accepted the process: "
                   "restart the worker (in development, ./run.sh runs a worker that reloads on code changes: "
                   "manage.py slct_worker --reload)")


def unknown_definition(name: str, *, worker_hint: bool | None = None) -> str:
    """The message for a definition this process does not know; with the stale-code hint in a
    worker."""
    hint = in_worker if worker_hint is None else worker_hint
    return f"unknown process definition {name!r}" + (STALE_CODE_HINT if hint else "")


def split_method(name: str) -> tuple[str, str] | None:
    """`Main_CheckApprove` -> ("Main", "CheckApprove"); None if it does not follow the rule."""
    m = METHOD_NAME.match(name)
    return (m.group(1), m.group(2)) if m else None


@dataclass
class Definition:
    name: str
    cls: type
    version: str = ""
    goroutines: dict[str, list[str]] = field(default_factory=dict)
    # Send policies of the named channels this definition declares (`register(channels=...)`).
    channels: dict[str, ChannelPolicy] = field(default_factory=dict)
    # When the workers start it by themselves (`register(schedule=...)`, slct_workflows.schedules).
    schedules: tuple = ()

    def method(self, name: str) -> Callable[..., Any]:
        func = getattr(self.cls, name, None)
        if func is None or split_method(name) is None or not callable(func):
            raise AttributeError(f"{self.cls.__name__} has no step method {name!r}")
        return func

    def has_method(self, name: str) -> bool:
        return split_method(name) is not None and callable(getattr(self.cls, name, None))

    def new_state(self) -> Any:
        return self.cls()

    def load_state(self, state: dict[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(self.cls)}
        known = {k: v for k, v in (state or {}).items() if k in names}
        return self.cls(**known)

    def dump_state(self, instance: Any) -> dict[str, Any]:
        return {f.name: getattr(instance, f.name) for f in dataclasses.fields(self.cls)}

    def state_fields(self) -> dict[str, bool]:
        """Field name -> has a default."""
        return {
            f.name: f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            for f in dataclasses.fields(self.cls)
        }


def step_methods(cls: type) -> dict[str, list[str]]:
    goroutines: dict[str, list[str]] = {}
    for name, member in inspect.getmembers(cls, callable):
        if name.startswith("_"):
            continue
        parts = split_method(name)
        if parts:
            goroutines.setdefault(parts[0], []).append(parts[1])
    return goroutines


def _cached_by_function(compute: Callable[[Callable[..., Any]], Any]) -> Callable[[Callable[..., Any]], Any]:
    """Signatures and type hints cost more than a small step: look at each method once (per
    class function, bound or not), not at every step."""
    cache: dict[tuple[Any, bool], Any] = {}

    def cached(func: Callable[..., Any]) -> Any:
        key = (getattr(func, "__func__", func), hasattr(func, "__self__"))
        try:
            return cache[key]
        except KeyError:
            value = cache[key] = compute(func)
            return value
        except TypeError:  # unhashable callable
            return compute(func)

    cached.__doc__, cached.__name__ = compute.__doc__, compute.__name__
    return cached


@_cached_by_function
def accepts_value(func: Callable[..., Any]) -> bool:
    """Does the bound step method take a value after `p`? (`def Main_Done(self, p)` does not.)"""
    params = [
        prm for prm in inspect.signature(func).parameters.values()
        if prm.kind in (prm.POSITIONAL_ONLY, prm.POSITIONAL_OR_KEYWORD, prm.VAR_POSITIONAL)
    ]
    return len(params) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


@_cached_by_function
def value_decoder(func: Callable[..., Any]) -> Callable[[Any, dict | None, bool], Any] | None:
    """A value parameter annotated with a type that has `from_delivery(value, source, closed)`
    (or the simpler `from_channel_value(value)`) gets decoded by it (for example
    `result: slack.Result`). `source` is what the server recorded of where the value came from
    (a timer, a step, an external sender's verified identity), never anything inside the value."""
    params = list(inspect.signature(func).parameters.values())  # bound: (p, value)
    if len(params) < 2:
        return None
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: pass the raw value
        return None
    hint = hints.get(params[1].name)
    full = getattr(hint, "from_delivery", None)
    if full is not None:
        return full
    simple = getattr(hint, "from_channel_value", None)
    return (lambda value, source, closed: simple(value)) if simple is not None else None


class Registry:
    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, Definition]] = {}
        self._latest: dict[str, str] = {}

    def channel_policy(self, channel: str) -> ChannelPolicy | None:
        """The policy some registered definition declares for the named channel, if any."""
        for versions in self._by_name.values():
            for d in versions.values():
                if channel in d.channels:
                    return d.channels[channel]
        return None

    def add(self, name: str, cls: type, version: str = "",
            channels: dict[str, ChannelPolicy] | None = None) -> Definition:
        if not is_name(name):
            raise ValueError(f"process definition name must be {NAME_RULE} (it appears in URLs), got {name!r}")
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"process definition {name!r}: {cls.__name__} must be a @dataclass")
        missing = [f for f, has_default in Definition(name, cls).state_fields().items() if not has_default]
        if missing:
            raise TypeError(
                f"process definition {name!r}: state fields need defaults so a new process can start: {missing}"
            )
        if not callable(getattr(cls, "Main_Start", None)):
            raise TypeError(f"process definition {name!r}: {cls.__name__} needs a Main_Start(self, p, input) method")
        declared = dict(channels or {})
        for chan, policy in declared.items():
            if not isinstance(policy, ChannelPolicy) or not is_name(chan):
                raise TypeError(f"process definition {name!r}: channels= maps channel names to ChannelPolicy, "
                                f"got {chan!r}: {policy!r}")
            other = self.channel_policy(chan)
            if other is not None and other != policy:
                raise ValueError(f"process definition {name!r} declares channel {chan!r} {policy.describe()}, "
                                 f"but another definition declares it {other.describe()}")
        definition = Definition(name=name, cls=cls, version=version, goroutines=step_methods(cls), channels=declared)
        versions = self._by_name.setdefault(name, {})
        existing = versions.get(version)
        if existing is not None and _class_path(existing.cls) != _class_path(cls):
            raise ValueError(f"process definition {name!r} version {version!r} is already registered by {existing.cls}")
        versions[version] = definition
        self._latest[name] = version if name not in self._latest else max(self._latest[name], version, key=_version_key)
        return definition

    def get(self, name: str, version: str | None = None) -> Definition:
        versions = self._by_name.get(name)
        if not versions:
            raise NotFound(unknown_definition(name))
        key = self._latest[name] if version is None else version
        if key not in versions:
            raise NotFound(f"process definition {name!r} has no version {version!r}")
        return versions[key]

    def for_process(self, name: str, version: str) -> Definition:
        """The definition a process started with `version` runs on: exactly that version. A
        process started before its definition had versions ("") follows the latest one, unless
        an unversioned class is still registered."""
        versions = self._by_name.get(name)
        if not versions:
            # A process exists with this definition, so some code knew it: this code is older
            # (or the definition was removed).
            raise NotFound(unknown_definition(name, worker_hint=True) if in_worker else
                           f"unknown process definition {name!r} (not registered in this process: was it "
                           f"removed, or is this process running older code than the one that started it?)")
        if version in versions:
            return versions[version]
        if version == "":
            return versions[self._latest[name]]
        raise NotFound(f"process definition {name!r} has no version {version!r} registered")

    def remove(self, name: str, version: str | None = None) -> None:
        """Unregister one version (or every version) of a definition."""
        versions = self._by_name.get(name, {})
        if version is None:
            versions.clear()
        else:
            versions.pop(version, None)
        if versions:
            self._latest[name] = max(versions, key=_version_key)
        else:
            self._by_name.pop(name, None)
            self._latest.pop(name, None)

    def snapshot(self) -> tuple[dict, dict]:
        return {n: dict(v) for n, v in self._by_name.items()}, dict(self._latest)

    def restore(self, snapshot: tuple[dict, dict]) -> None:
        by_name, latest = snapshot
        self._by_name, self._latest = {n: dict(v) for n, v in by_name.items()}, dict(latest)

    def all(self) -> list[Definition]:
        return [d for name in sorted(self._by_name) for _, d in sorted(self._by_name[name].items())]

    def latest(self) -> list[Definition]:
        return [self.get(name) for name in sorted(self._by_name)]


def _version_key(v: str) -> tuple:
    """"2" < "10", and numbers sort before words, so mixed schemes still compare."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-]", v)) if v else ()


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


registry = Registry()


def register(
    name: str, *, version: str = "", channels: dict[str, ChannelPolicy] | None = None,
    schedule: Any = None,
) -> Callable[[type[T]], type[T]]:
    """Register a dataclass as the process definition `name` (optionally one `version` of it).
    `channels` declares who may send into named channels from outside, e.g.
    `{"approvals": ChannelPolicy.restricted(permission="finance.approve")}` (docs/SECURITY.md).
    `schedule` starts it on a schedule: `Schedule.cron("0 9 * * mon-fri", tz="Europe/Paris")`,
    `Schedule.every(timedelta(minutes=5))`, or a list of them (README "Schedules")."""
    from .slots import for_definition

    schedules = for_definition(name, schedule)

    def decorator(cls: type[T]) -> type[T]:
        registry.add(name, cls, version, channels).schedules = schedules
        return cls

    return decorator


def load_modules(modules: list[str]) -> None:
    for module in modules:
        importlib.import_module(module)
