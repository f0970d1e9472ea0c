"""Engine what-ifs, measured without editing the engine: `python -m bench.experiments [--db sqlite]`.

update-fields: the same in-process pair, with the engine's full-row `save()` of the process and
the goroutine made `save(update_fields=[the columns a step can change])` for the duration (a
wrapper around the two models' `save`). Prints wall and CPU time per step.

woken-first: one ping-pong pair driven in this process through `slct_workflows.jobs.wake` (as a
worker would, with the real dispatcher), first with `jobs._run` as committed, then with a copy
of it whose only change is the order of its local queue: the goroutine a step woke runs before
the step's own goroutine goes on. Prints steps/s and the wake-up latency of each, twice.

The copy follows `jobs._run` as of commit 1a9bc92; if the engine's loop changes, this
experiment must follow it (it says so if the names it needs are gone).
"""
from __future__ import annotations

import sys
import time


def _woken_first(goroutine_id: int) -> int:
    from slct_workflows import conf, dispatch, engine, jobs

    steps = 0
    queue = [goroutine_id]
    with dispatch.claiming_wakes() as claimed:
        try:
            while queue and steps < conf.steps_per_job():
                current = queue.pop(0)
                result = engine.run_step(current)
                if result.blocked and engine.fire_due_timer(current):
                    result = engine.run_step(current)
                if not result.ran:
                    continue
                steps += 1
                # the only change: woken goroutines first, then this one if it can go on
                queue[0:0] = list(claimed) + ([current] if result.runnable_again else [])
                claimed.clear()
                if len(queue) > jobs.LOCAL_QUEUE:
                    dispatch.wake_now(queue[jobs.LOCAL_QUEUE:])
                    del queue[jobs.LOCAL_QUEUE:]
        finally:
            dispatch.wake_now([*queue, *claimed])
    return steps


def _pair(run_impl, seconds: float) -> dict:
    from django.utils import timezone

    from slct_workflows import dispatch, jobs, services
    from slct_workflows.models import ProcessInstance

    from . import measure
    from .stepprof import _TeeDispatcher

    original = jobs._run
    jobs._run = run_impl
    tee = _TeeDispatcher(dispatch.get())
    previous = dispatch.use(tee)
    tag = f"x{time.time_ns()}"
    try:
        services.start_process("pingpong", {"role": "pong", "inbox": f"{tag}a", "outbox": f"{tag}b", "rounds": 10**9})
        services.start_process("pingpong", {"role": "ping", "inbox": f"{tag}b", "outbox": f"{tag}a", "rounds": 10**9})
        for _ in range(10):
            jobs.wake(tee.pending.popleft())
        t0 = timezone.now()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and tee.pending:
            jobs.wake(tee.pending.popleft())
        t1 = timezone.now()
    finally:
        dispatch.use(previous)
        jobs._run = original
    ProcessInstance.objects.filter(status="running").update(status="cancelled")
    return measure.runtime_window(t0, t1, definitions=["pingpong"], pad=0.5)


PROCESS_FIELDS = ["state", "step_count", "status", "output", "error", "finished_at", "updated_at"]
GOROUTINE_FIELDS = ["status", "next_method", "next_value", "next_closed", "next_case", "next_source", "wait_seq",
                    "attempts", "retry_at", "last_error", "runnable_since", "updated_at"]


class _UpdateFields:
    """Within the block, an update of ProcessInstance/Goroutine without update_fields writes only
    the columns a step can change."""

    def __enter__(self):
        from slct_workflows.models import Goroutine, ProcessInstance

        self.saved = []
        for model, fields in ((ProcessInstance, PROCESS_FIELDS), (Goroutine, GOROUTINE_FIELDS)):
            original = model.save

            def save(obj, *args, _original=original, _fields=fields, **kwargs):
                if obj._state.adding or args or kwargs:
                    return _original(obj, *args, **kwargs)
                return _original(obj, update_fields=_fields)

            self.saved.append((model, original))
            model.save = save
        return self

    def __exit__(self, *exc):
        for model, original in self.saved:
            model.save = original
        return False


def _cost(update_fields: bool, seconds: float) -> dict:
    import contextlib

    from slct_workflows import dispatch, jobs, services
    from slct_workflows.models import ProcessInstance

    from .stepprof import _TeeDispatcher

    tee = _TeeDispatcher(dispatch.get())
    previous = dispatch.use(tee)
    tag = f"y{time.time_ns()}"
    try:
        services.start_process("pingpong", {"role": "pong", "inbox": f"{tag}a", "outbox": f"{tag}b", "rounds": 10**9})
        services.start_process("pingpong", {"role": "ping", "inbox": f"{tag}b", "outbox": f"{tag}a", "rounds": 10**9})
        with _UpdateFields() if update_fields else contextlib.nullcontext():
            for _ in range(10):
                jobs.wake(tee.pending.popleft())
            steps = 0
            t, c = time.perf_counter(), time.process_time()
            end = t + seconds
            while time.perf_counter() < end and tee.pending:
                steps += jobs.wake(tee.pending.popleft())
            wall, cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        dispatch.use(previous)
    ProcessInstance.objects.filter(status="running").update(status="cancelled")
    return {"steps_per_s": round(steps / wall, 1), "wall_ms": round(1000 * wall / steps, 2),
            "cpu_ms": round(1000 * cpu / steps, 2)}


def main(argv: list[str]) -> None:
    from .cli import make_env, parse
    from .infra import drop_queue_keys, ensure_redis, fresh_database, stop_redis

    args = parse(argv + ["--peer", "none"])
    env = make_env(args)
    ensure_redis(env)
    env.apply()
    try:
        fresh_database(env)
        import django

        django.setup()
        from slct_workflows import dispatch, jobs

        if not all(hasattr(jobs, n) for n in ("_run", "LOCAL_QUEUE")) or not hasattr(dispatch, "claiming_wakes"):
            raise SystemExit("the engine's job loop changed: bench/experiments.py must follow it")
        drop_queue_keys(env)
        print(f"woken-first, 1 ping-pong pair in-process on {env.db}, {args.duration:.0f} s each:")
        for _ in range(2):
            for name, impl in (("as committed", jobs._run), ("woken first", _woken_first)):
                r = _pair(impl, args.duration)
                print(f"  {name:13} steps/s {r['steps_per_s']:7}  wake-up → woken step commit p50 "
                      f"{r['wake']['p50_ms']} ms, p99 {r['wake']['p99_ms']} ms (n={r['wake']['n']})")
        print(f"update-fields, 1 ping-pong pair in-process on {env.db}, {args.duration:.0f} s each:")
        for _ in range(2):
            for name, flag in (("as committed", False), ("update_fields", True)):
                r = _cost(flag, args.duration)
                print(f"  {name:13} steps/s {r['steps_per_s']:7}  {r['wall_ms']} ms wall, {r['cpu_ms']} ms CPU per step")
        drop_queue_keys(env)
    finally:
        stop_redis(env)


if __name__ == "__main__":
    main(sys.argv[1:])
