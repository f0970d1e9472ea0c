"""One table with every figure, and the ratios ours/ceiling and ours/peer (Markdown)."""
from __future__ import annotations


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if unit == "ms":
        return f"{v:,.1f} ms" if v < 100 else f"{v:,.0f} ms"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"


def _ratio(a, b) -> str:
    if a is None or b in (None, 0):
        return "–"
    return f"{a / b:.2f}×"


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def _get(d: dict | None, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _cats(c: dict | None) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in (c or {}).items() if v >= 0.01) or "–"


def render(r: dict) -> str:
    a = r["args"]
    naive, pp, fi, tm, db = r.get("naive"), r.get("pingpong"), r.get("fanin"), r.get("timers"), r.get("dbos")
    pp1 = r.get("pingpong_1")
    dbos_ok = isinstance(db, dict) and "error" not in db
    rows: list[tuple] = []

    def row(label, ours=None, ceiling=None, peer=None, unit="", better="higher", goal=""):
        cmp = (lambda x, y: x >= y) if better == "higher" else (lambda x, y: x <= y)
        ahead = None if ours is None or peer is None else cmp(ours, peer)
        rows.append((label, _fmt(ours, unit), _fmt(ceiling, unit), _ratio(ours, ceiling),
                     _fmt(peer, unit), _ratio(ours, peer) + _mark(ahead), goal))

    def goal(text: str, ok: bool | None) -> str:
        return text + _mark(ok)

    w = f"{a['workers']} {a['worker_class']} worker{'s' if a['workers'] != 1 else ''}"
    if r.get("raw_1"):
        row("1a ORM step-shaped tx/s, 1 connection", ceiling=r["raw_1"]["tx_per_s"])
    if r.get("raw_n"):
        row(f"1a ORM step-shaped tx/s, {r['raw_n']['connections']} connections", ceiling=r["raw_n"]["tx_per_s"])
    for nv in (naive, r.get("naive_1")):
        if nv:
            c = f"{nv['chains']} chain{'s' if nv['chains'] != 1 else ''}"
            row(f"1b naive job-per-step pipeline ({w}, {c}), steps/s", ceiling=nv["steps_per_s"])
            row(f"1b naive, {c}: commit → next job's commit, p50", ceiling=_get(nv, "wake", "p50_ms"), unit="ms")
            row(f"1b naive, {c}: commit → next job's commit, p99", ceiling=_get(nv, "wake", "p99_ms"), unit="ms")
    n_steps = _get(naive, "steps_per_s")
    n50, n99 = _get(naive, "wake", "p50_ms"), _get(naive, "wake", "p99_ms")
    d_ops, d_msgs = (_get(db, "ops_per_s"), _get(db, "messages_per_s")) if dbos_ok else (None, None)

    def lat_goal(v, limit):
        return goal(f"≤ {limit} ms", None if v is None else v <= limit)

    raw_n = _get(r.get("raw_n"), "tx_per_s")
    if pp:
        s = pp["steps_per_s"]
        row(f"2a ping-pong ({pp['pairs']} pairs), steps/s [DBOS: send+recv ops/s]", s, n_steps, d_ops,
            goal=goal("≥ naive", None if n_steps is None else s >= n_steps))
        if raw_n:  # issue 17's goal: the ORM's own step-shaped transactions on as many connections
            row(f"2a ping-pong steps/s against 1a on {r['raw_n']['connections']} connections", s, raw_n,
                goal=goal("≥ 1.0×", s >= raw_n))
        row("2a ping-pong, messages/s", pp["messages_per_s"], None, d_msgs)
        for q, limit in (("p50", 10), ("p99", 10)):
            v = _get(pp, "send_recv", f"{q}_ms")
            row(f"2a ping-pong, send → receiver's step commit, {q}", v, _get(naive, "wake", f"{q}_ms"),
                _get(db, "wake", f"{q}_ms") if dbos_ok else None, "ms", "lower", lat_goal(v, limit))
        for q in ("p50", "p99"):
            v = _get(pp, "wake", f"{q}_ms")
            row(f"2a ping-pong, any wake-up → woken step commit, {q}", v, _get(naive, "wake", f"{q}_ms"),
                _get(db, "wake", f"{q}_ms") if dbos_ok else None, "ms", "lower")
    if pp1:
        n1, db1 = r.get("naive_1"), r.get("dbos_1")
        label = f"{pp1['pairs']} pair{'s' if pp1['pairs'] != 1 else ''}"
        row(f"2a ping-pong, {label} (no queueing), steps/s", pp1["steps_per_s"], _get(n1, "steps_per_s"),
            _get(db1, "ops_per_s"))
        for q, limit in (("p50", 10), ("p99", 50)):
            v = _get(pp1, "send_recv", f"{q}_ms")
            row(f"2a ping-pong, {label}: send → receiver's step commit, {q}", v, _get(n1, "wake", f"{q}_ms"),
                _get(db1, "wake", f"{q}_ms"), "ms", "lower", lat_goal(v, limit))
        for q in ("p50", "p99"):
            v = _get(pp1, "wake", f"{q}_ms")
            row(f"2a ping-pong, {label}: any wake-up → woken step commit, {q}", v, _get(n1, "wake", f"{q}_ms"),
                _get(db1, "wake", f"{q}_ms"), "ms", "lower")
    if not pp and dbos_ok:  # the peer alone (--only peer)
        row(f"3 DBOS ping-pong ({db['pairs']} pairs), send+recv ops/s", peer=d_ops)
        row("3 DBOS ping-pong, messages/s", peer=d_msgs)
        row("3 DBOS ping-pong, send → recv returned, p50", peer=_get(db, "wake", "p50_ms"), unit="ms")
        row("3 DBOS ping-pong, send → recv returned, p99", peer=_get(db, "wake", "p99_ms"), unit="ms")
    if not pp1 and r.get("dbos_1"):
        db1 = r["dbos_1"]
        row(f"3 DBOS ping-pong ({db1['pairs']} pair), send+recv ops/s", peer=db1["ops_per_s"])
        row("3 DBOS ping-pong, 1 pair: send → recv returned, p50", peer=_get(db1, "wake", "p50_ms"), unit="ms")
        row("3 DBOS ping-pong, 1 pair: send → recv returned, p99", peer=_get(db1, "wake", "p99_ms"), unit="ms")
    if fi:
        s = fi["steps_per_s"]
        row(f"2b fan-in ({fi['senders']} senders → 1 chan, cap {fi['capacity']}), steps/s", s, n_steps,
            goal=goal("≥ 2× naive", None if n_steps is None else s >= 2 * n_steps))
        row("2b fan-in, values received/s", fi["messages_per_s"])
        v = _get(fi, "wake", "p50_ms")
        row("2b fan-in, any wake-up → woken step commit, p50", v, n50, None, "ms", "lower", lat_goal(v, 10))
        v = _get(fi, "wake", "p99_ms")
        row("2b fan-in, any wake-up → woken step commit, p99", v, n99, None, "ms", "lower", lat_goal(v, 50))
        v = _get(fi, "send_recv", "p50_ms")
        if v is not None:
            row(f"2b fan-in, send → blocked receiver's commit, p50 (n={fi['send_recv']['n']})", v, n50, None, "ms",
                "lower")
    if tm:
        last = _get(tm, "lateness", "max_ms")
        row(f"2c {tm['timers']} timers due at once: last fired (step commit) after due", last, unit="ms",
            better="lower", goal=goal("≤ 1000 ms", None if last is None else last <= 1000 and tm["fired"] == tm["timers"]))
        row("2c timers: first fired after due", tm.get("first_ms"), unit="ms", better="lower")
        row(f"2c timers: all {tm['timers']} timer cases consumed (goroutines runnable) after due",
            tm.get("all_consumed_ms"), unit="ms", better="lower")
        row("2c timers: p50 lateness", _get(tm, "lateness", "p50_ms"), unit="ms", better="lower")
        row("2c timers: fired within 1 s of due", f"{tm['within_1s']}/{tm['timers']}")
        row("2c timers: firings/s once due", tm.get("fire_rate"), n_steps)

    head = ("figure", "ours", "ceiling", "ours/ceiling", "DBOS peer", "ours/DBOS", "goal")
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    fmt = lambda cells: "| " + " | ".join(str(c).ljust(widths[i]) for i, c in enumerate(cells)) + " |"  # noqa: E731
    lines = [fmt(head), "|" + "|".join("-" * (wd + 2) for wd in widths) + "|", *map(fmt, rows)]

    m = r.get("machine", {})
    notes = [
        "",
        f"{r.get('db_version', r['db'])}; {w}; {a['duration']:.0f} s measured per scenario after "
        f"{a['warmup']:.0f} s warm-up; machine: {m.get('cpus')} CPUs ({m.get('cpu', '?')}), "
        f"{m.get('mem_gib', '?')} GiB, load average (1/5/15 min) at start "
        f"{tuple(round(x, 2) for x in m.get('load_at_start', ()))}, at end {tuple(round(x, 2) for x in m.get('load_at_end', ()))}; "
        f"total {r.get('total_s', '?')} s; code {r.get('code', '?')}.",
        f"machine speed: a 1-million-addition Python loop took {m.get('python_loop_ms_at_start', '?')} ms at start, "
        f"{m.get('python_loop_ms_at_end', '?')} ms at end (best of 5; compare absolute figures across runs with it).",
    ]
    if dbos_ok:
        notes.append(f"DBOS: {db['pairs']} pairs in {db['processes']} process(es), notification polling "
                     f"{db['poll_s']} s; latency = DBOS.send returned → DBOS.recv returned (n={db['wake']['n']}).")
        if db.get("errors"):
            notes.append(f"DBOS errors: {db['errors'][:3]}")
    elif isinstance(db, dict):
        notes.append(f"DBOS peer did not run: {db['error']}")
    if tm:
        notes.append(f"timers: deadline {tm['lead_s']:.1f} s after start, at half past a second; all armed before "
                     f"due: {tm['armed_before_due']} ({tm['armed_s_before_due']} s before; {tm['armed_late']} late).")
    if pp:
        notes.append(f"ping-pong step duration (start → finished_at) p50 {pp['step_ms']['p50_ms']} ms, p99 "
                     f"{pp['step_ms']['p99_ms']} ms; wake-up → woken step start p50 {pp['wake_to_start']['p50_ms']} ms, "
                     f"p99 {pp['wake_to_start']['p99_ms']} ms; {pp.get('stepping')} of {2 * pp['pairs']} processes "
                     f"ran a step in the window.")
    if fi:
        notes.append(f"fan-in step duration p50 {fi['step_ms']['p50_ms']} ms, mean {fi['step_ms'].get('mean_ms')} ms; "
                     f"steps/s × mean step time = {fi.get('channel_busy')} (1.0 = the steps ran one at a time: they "
                     f"all lock the one channel row until commit); {fi.get('stepping')} of {fi['senders'] + 1} "
                     f"processes ran a step in the window.")
    p = r.get("profile")
    if p:
        notes.append(
            f"profile ({p['workers']} profiled workers, {p['steps_per_s_profiled']} steps/s under the profiler): "
            f"{p['queries_per_step']} SQL queries/step ({p['queries_per_step_by_verb']}); "
            f"{p['ms_per_step_in_jobs']} ms of job time/step of which SQL {p['sql_ms_per_step']} ms "
            f"({p['sql_share_of_job_time']:.0%}) + COMMIT {p['commit_ms_per_step']} ms; workers busy {p['busy_share']:.0%}; {p['steps_per_job']} steps/job; "
            f"{p.get('wake_jobs_without_a_step')} of {p.get('wake_jobs')} wake jobs ran no step. "
            f"Worker time by category (pyinstrument self time): {_cats(p.get('time_by_category'))}. "
            f"Trees: {p['files']}/worker-*.txt"
        )
    sp = r.get("step_profile")
    if sp:
        raw = sp["raw"]
        notes.append(
            f"one step, alone on one connection (ping-pong driven in-process through jobs.wake): "
            f"{sp['wall_ms_per_step']} ms wall = SQL {sp['sql_ms_per_step']} ms ({sp['queries_per_step']} queries: "
            f"{sp['queries_per_step_by_verb']}) + COMMIT {sp['commit_ms_per_step']} ms ({sp['commits_per_step']}/step) "
            f"+ Redis enqueue {sp['redis_ms_per_step']} ms + Python (ORM, engine, user code) {sp.get('python_ms_per_step')} ms; "
            f"CPU {sp['cpu_ms_per_step']} ms/step; {sp['steps_per_s_one_connection']} steps/s. The ceiling "
            f"transaction: {raw['wall_ms_per_tx']} ms wall, SQL {raw['sql_ms_per_tx']} ms ({raw['queries_per_tx']} "
            f"queries), COMMIT {raw['commit_ms_per_tx']} ms, CPU {raw['cpu_ms_per_tx']} ms. "
            f"Step time by category (pyinstrument self time): {_cats(sp.get('time_by_category'))}. Tree: {sp['tree']}"
        )
    ec = r.get("enqueue_cost")
    if ec:
        notes.append(
            f"one wake-up enqueue: {ec['dispatcher_ms']} ms through the runtime's dispatcher (its queue kept per "
            f"process) vs {ec['kept_queue_ms']} ms on a kept Queue; one Redis "
            f"command {ec['one_redis_command_ms']} ms."
        )
    return "\n".join(lines + notes)
