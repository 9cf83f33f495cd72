"""What the engine's configurable objects (steps, schedulers, renderables) share.

master.cfg is loaded afresh on every reconfig, so the objects it makes are new each time.
A :class:`Configured` object remembers the arguments it was made with: two are equal when
they are of the same class made with equal arguments (a reconfig then leaves unchanged
schedulers running), and :meth:`Configured.fresh` makes a new one from them (each build
runs its own step objects, never those of master.cfg).
"""

from __future__ import annotations

from typing import Any


class Configured:
    """An object equal to another of its class made with the same arguments; ``fresh()`` remakes it."""

    _init_args: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # noqa: D102 (records the arguments)
        obj = super().__new__(cls)
        obj._init_args = (args, dict(kwargs))
        return obj

    def fresh(self) -> Any:
        """A new object made with the same arguments as this one."""
        args, kwargs = self._init_args
        return type(self)(*args, **kwargs)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._init_args == other._init_args

    def __hash__(self) -> int:
        return hash((type(self), repr(self._init_args)))


def check_engine_config(builders: list[Any], schedulers: list[Any]) -> None:
    """Validate the engine's part of master.cfg; raise ValueError naming the key at fault.

    *builders* are BuilderConfig objects with a ``steps`` list; *schedulers* the
    ``schedulers`` list.  For ``master.config._check`` to call (wrapping ValueError in ConfigError).
    """
    from master.engine.locks import check_locks
    from master.engine.schedulers import BaseScheduler, Triggerable
    from master.engine.steps import BuildStep, Trigger

    names = {builder.name for builder in builders}
    triggerables = {s.name for s in schedulers if isinstance(s, Triggerable)}
    for index, builder in enumerate(builders):
        check_locks(getattr(builder, "locks", None), f"builders[{index}].locks")
        for number, step in enumerate(getattr(builder, "steps", None) or []):
            where = f"builders[{index}].steps[{number}]"
            if not isinstance(step, BuildStep):
                raise ValueError(f"{where}: expected a build step such as ShellCommand(...), got {step!r}")
            if isinstance(step, Trigger):
                unknown = [name for name in step.schedulerNames if name not in triggerables]
                if unknown:
                    raise ValueError(f"{where}: no Triggerable scheduler named {', '.join(map(repr, unknown))}")
    seen: set[str] = set()
    for index, scheduler in enumerate(schedulers):
        where = f"schedulers[{index}]"
        if not isinstance(scheduler, BaseScheduler):
            raise ValueError(f"{where}: expected a scheduler such as ForceScheduler(...), got {scheduler!r}")
        if scheduler.name in seen:
            raise ValueError(f"{where}: scheduler name {scheduler.name!r} is used twice")
        seen.add(scheduler.name)
        unknown = [name for name in scheduler.builderNames if name not in names]
        if unknown:
            raise ValueError(f"{where}.builderNames: no such builder(s) {', '.join(map(repr, unknown))}")
