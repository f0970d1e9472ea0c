"""The step's hot-path SQL, written once instead of built from querysets at every step.

Building a statement from a queryset (filters, joins, the select list, quoting, compiling) cost
more of a short step than the database did. The statements on a step's path have a fixed shape;
only their parameters differ. So:

* `FixedQuery` / `FixedValues` compile a queryset once per vendor and shape (the length of each
  list argument) with placeholder values, check that the placeholders are the statement's only
  parameters (a constant in the filter is refused: it would be frozen in), and from then on run
  the same SQL, converting rows and building instances as the queryset does;
* `FixedSave`, `FixedInsert`, `FixedWrite` write rows with SQL written once, their values
  prepared by the model fields exactly as `save()` / `bulk_create()` prepare them;
* `execute_together` sends several writes in one round trip where the driver allows it;
* `deferring()` holds a step's writes back (`defer`) until its next statement, which carries them
  in the same round trip; any other query sends them first (an execute wrapper), so every read
  still sees them.

Measured in docs/PERFORMANCE.md: a ping-pong step on PostgreSQL from 5.9 to 2.5 ms.
"""
from __future__ import annotations

import hashlib
import itertools
import re
import threading
from contextlib import contextmanager
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Model, QuerySet
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from slct_workflows import conf

M = TypeVar("M", bound=Model)


class FixedQuery(Generic[M]):
    """`FixedQuery(lambda gid: Goroutine.objects.filter(pk=gid))(42)` -> list of Goroutine.
    Arguments are scalars or lists (an `IN (...)`); the builder must use each exactly as given.
    Instances are built as the queryset builds them (`Model.from_db` on converted rows), or
    directly where that is the same thing (`_plain_instances`)."""

    def __init__(self, build: Callable[..., QuerySet[M]]) -> None:
        self.values = FixedValues(build)
        self.plain: bool | None = None  # _plain_instances, decided at the first read

    def __call__(self, *args: Any) -> list[M]:
        return read_together((self, args))[0]

    def prepare(self, args: Sequence[Any], conn: Any = None) -> tuple[str, list[Any], Callable[[list], list]]:
        conn = conn or connections[DEFAULT_DB_ALIAS]
        sql, params, convert = self.values.prepare(args, conn)
        model, names, db = self.values.model, self.values.attnames, conn.alias
        if self.plain is None:
            self.plain = _plain_instances(model, names)
        if not self.plain or _init_observed(model):
            return sql, params, lambda rows: [model.from_db(db, names, row) for row in convert(rows)]

        def build(rows: list) -> list[M]:
            built = []
            for row in convert(rows):
                obj = _new_instance(model)
                obj.__dict__.update(zip(names, row))
                state = obj._state = ModelState()
                state.adding, state.db = False, db
                built.append(obj)
            return built

        return sql, params, build


def _plain_instances(model: type[Model], names: Sequence[str]) -> bool:
    """Whether an instance of a whole row can be built without `Model.__init__` (written for every
    way of calling it: about 4% of a step's instructions, by callgrind): every concrete field is
    read, in order, each stored as `__init__` stores it (a plain or foreign-key attribute: no file or
    custom descriptor), and the model keeps Django's `from_db`. `pre_init`/`post_init`
    receivers are checked at each read (`_init_observed`)."""
    from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
    from django.db.models.query_utils import DeferredAttribute

    fields = model._meta.concrete_fields
    return (
        list(names) == [f.attname for f in fields]
        and all(type(getattr(model, f.attname, None)) in (DeferredAttribute, ForeignKeyDeferredAttribute) for f in fields)
        and getattr(model.from_db, "__func__", None) is Model.from_db.__func__
    )


def _init_observed(model: type[Model]) -> bool:
    return pre_init.has_listeners(model) or post_init.has_listeners(model)


_new_instance = object.__new__


class FixedValues:
    """The same for a `values_list()` queryset: returns its rows as tuples, converted as the
    queryset would convert them. The converters kept are the first compiler's (field and
    backend functions that read settings, not the connection's state)."""

    def __init__(self, build: Callable[..., QuerySet]) -> None:
        self.build = build
        self.compiled: dict[tuple, tuple[str, Any, list, list[int]]] = {}
        self.attnames: list[str] = []  # the columns' attribute names, for FixedQuery's instances
        self.model: type[Model] | None = None

    def __call__(self, *args: Any) -> list[tuple]:
        return read_together((self, args))[0]

    def prepare(self, args: Sequence[Any], conn: Any = None) -> tuple[str, list[Any], Callable[[list], list]]:
        """The SQL, its parameters, and how to turn the fetched rows into the result."""
        shape = _shape((conn or connections[DEFAULT_DB_ALIAS]).vendor, args)
        found = self.compiled.get(shape)
        if found is None:
            qs, compiler, sql, order = _compile(self.build, args)
            fields = [s[0] for s in compiler.select[: compiler.col_count]]
            self.attnames = [f.target.attname for f in fields]
            self.model = compiler.query.model
            found = self.compiled[shape] = (sql, compiler, compiler.get_converters(fields), order)
        sql, compiler, converters, order = found

        def convert(rows: list) -> list[tuple]:
            if converters:
                rows = list(compiler.apply_converters(rows, converters))
            return [tuple(r) for r in rows]

        flat = _flat(args)
        return sql, [flat[i] for i in order], convert


def read_together(*reads: tuple[Any, Sequence[Any]]) -> list[list]:
    """Run `(FixedQuery or FixedValues, args)` reads in order and return their results, in one
    round trip where the driver allows it (see `execute_together`). Each statement still takes
    its own snapshot when it starts, after the ones before it have finished: a read placed after
    a `SELECT ... FOR UPDATE` sees what the previous holder of the lock committed, exactly as if
    it had been sent after it."""
    conn = connections[DEFAULT_DB_ALIAS]
    prepared = [fixed.prepare(args, conn) for fixed, args in reads]
    raw = _direct_cursor(conn)
    if raw is not None:
        return _read(conn, raw, raw, prepared)
    with conn.cursor() as cursor:
        return _read(conn, cursor, cursor.cursor, prepared)


def _read(conn: Any, cursor: Any, raw: Any, prepared: list) -> list[list]:
    results: list[list] = []
    writes = _take()
    direct = cursor is raw
    together = direct or _together(conn, raw)
    prepares = together and conf.prepared_statements()  # read once per round trip
    if together and (len(prepared) + len(writes) > 1 or prepares or direct):
        # Prepared first: a PREPARE that fails must not leave the writes (a SAVEPOINT among
        # them) marked as sent when they were not.
        texts = _executes(conn, [*((st.sql, st.params, st.prepare) for st in writes),
                                 *((sql, params, True) for sql, params, _ in prepared)], prepares)
        _sent(writes)
        _send(conn, cursor, "; ".join(texts),
              [*(p for st in writes for p in st.params), *(p for _, params, _ in prepared for p in params)])
        counts = [raw.rowcount]
        for _ in writes[1:]:
            raw.nextset()
            counts.append(raw.rowcount)
        _check(writes, counts)
        for i, (_, _, convert) in enumerate(prepared):
            if i or writes:
                raw.nextset()
            results.append(convert(raw.fetchall()))
    else:
        _run_each(cursor, writes)
        for sql, params, convert in prepared:
            cursor.execute(sql, params)
            results.append(convert(cursor.fetchall()))
    return results


def _shape(vendor: str, args: Sequence[Any]) -> tuple:
    return (vendor, *(len(a) if isinstance(a, (list, tuple)) else None for a in args))


def _flat(args: Sequence[Any]) -> list[Any]:
    return [v for a in args for v in (a if isinstance(a, (list, tuple)) else [a])]


def _compile(build: Callable[..., QuerySet], args: Sequence[Any]):
    """Compile with placeholder values; returns the queryset, its compiler, the SQL, and for each
    of the SQL's parameters which argument value (in `_flat` order) goes there: Django may put
    the filters in another order than the builder wrote them."""
    counter = iter(range(7_000_001, 8_000_000))
    marks = [[-next(counter) for _ in a] if isinstance(a, (list, tuple)) else -next(counter) for a in args]
    qs = build(*marks)
    compiler = qs.query.get_compiler(using=qs.db)
    sql, params = compiler.as_sql()
    # A text column gets its placeholder as a string: compare the text of each.
    position = {str(m): i for i, m in enumerate(_flat(marks))}
    order = [position.get(str(p)) for p in params]
    if None in order or sorted(order) != list(range(len(position))):
        raise RuntimeError(f"FixedQuery: the parameters of {sql!r} are not only its placeholders: {params!r}")
    return qs, compiler, sql, order


class Statement:
    """One write, ready to run: SQL, parameters, and the row count it must report (or None).
    `conflict`: a wrong count means the row changed under a conditional write (Conflict, the
    transaction reruns), not a bug; a callable is called first (to read that row differently
    next time)."""

    def __init__(self, sql: str, params: list[Any], expect: int | None, what: str, *,
                 conflict: bool | Callable[[], None] = False, prepare: bool = True) -> None:
        self.sql, self.params, self.expect, self.what, self.conflict = sql, params, expect, what, conflict
        self.prepare = prepare  # False: a one-off (a named SAVEPOINT), not worth a prepared statement
        self.sent = False  # handed to the driver (deferred statements: whether it ran)


class PreparedStatementsLost(DatabaseError):
    """The session no longer has a statement this process PREPAREd on it (a `DEALLOCATE ALL` or
    `DISCARD ALL` behind its back, a pooler that moved it to another server connection). The
    process forgets what it prepared there; the transaction reruns and prepares again
    (runtime.db.is_retryable)."""


class Conflict(DatabaseError):
    """A conditional write found its row no longer as read (a waiter fired meanwhile by another
    transaction): the transaction is rerun and reads again (runtime.db.is_retryable)."""


def execute_together(statements: Sequence[Statement]) -> None:
    """Run writes in order, in one round trip where the driver allows it: psycopg's client-side
    cursor (Django's default) sends several statements in one query; elsewhere (SQLite,
    server-side binding) they run one by one. Deferred writes go first. Raises if a statement
    reports a wrong row count."""
    statements = [*_take(), *statements]
    if not statements:
        return
    conn = connections[DEFAULT_DB_ALIAS]
    raw = _direct_cursor(conn)
    if raw is not None:
        _write(conn, raw, raw, statements)
        return
    with conn.cursor() as cursor:
        _write(conn, cursor, cursor.cursor, statements)


def _write(conn: Any, cursor: Any, raw: Any, statements: Sequence[Statement]) -> None:
    direct = cursor is raw
    together = direct or _together(conn, raw)
    prepares = together and conf.prepared_statements()  # read once per round trip
    if together and (len(statements) > 1 or prepares or direct):
        texts = _executes(conn, [(st.sql, st.params, st.prepare) for st in statements], prepares)
        _sent(statements)  # after the PREPAREs (see read_together)
        _send(conn, cursor, "; ".join(texts), [p for st in statements for p in st.params])
        counts = [raw.rowcount]
        while raw.nextset():
            counts.append(raw.rowcount)
        _check(statements, counts)
    else:
        _run_each(cursor, statements)


def _run_each(cursor: Any, statements: Sequence[Statement]) -> None:
    for st in statements:
        st.sent = True
        cursor.execute(st.sql, st.params)
        _check([st], [cursor.rowcount])


def _sent(statements: Sequence[Statement]) -> None:
    for st in statements:
        st.sent = True


def _check(statements: Sequence[Statement], counts: Sequence[int]) -> None:
    for st, n in zip(statements, counts):
        if st.expect is not None and n != st.expect:
            if st.conflict:
                if callable(st.conflict):
                    st.conflict()
                raise Conflict(f"{st.what}: changed by another transaction")
            raise DatabaseError(f"{st.what}: {n} rows written, expected {st.expect}")


# -- deferred writes ---------------------------------------------------------------------------

class _Deferred(threading.local):
    statements: list[Statement] | None = None  # None: not deferring


_deferred = _Deferred()


def defer(statement: Statement) -> None:
    """Run this write with the next statement (inside `deferring()`), else now."""
    if _deferred.statements is None:
        execute_together([statement])
    else:
        _deferred.statements.append(statement)


def _take() -> list[Statement]:
    pending = _deferred.statements
    if not pending:
        return []
    taken = list(pending)
    pending.clear()
    return taken


@contextmanager
def deferring() -> Iterator[None]:
    """Inside, `defer`red writes wait for the next statement and travel in its round trip; any
    query not sent through this module sends them first (so reads see them), and the block's
    end sends what is left. On an exception they are dropped: their transaction or savepoint
    is rolled back. Nested blocks are the outer block."""
    if _deferred.statements is not None:
        yield
        return
    _deferred.statements = []
    try:
        with connection.execute_wrapper(_send_deferred_first):
            yield
            execute_together([])
    finally:
        _deferred.statements = None


def _send_deferred_first(execute: Callable, sql: str, params: Any, many: bool, context: dict) -> Any:
    if _deferred.statements:
        execute_together([])
    return execute(sql, params, many, context)


def sends_together() -> bool:
    """Do several statements travel in one round trip on this connection (PostgreSQL through
    psycopg's client-side cursor)? Elsewhere each statement is its own call."""
    conn = connections[DEFAULT_DB_ALIAS]
    if conn.vendor != "postgresql":
        return False
    if _direct_cursor(conn) is not None:
        return True
    with conn.cursor() as cursor:
        return _together(conn, cursor.cursor)


# -- the round trip's cursor --------------------------------------------------------------------

def _direct_cursor(conn: Any) -> Any:
    """psycopg's cursor itself, kept for the connection's life, when nothing would see the
    difference from Django's cursor: a PostgreSQL client-side cursor (the one that sends several
    statements at once), connected and health-checked, no execute wrapper but this module's own
    (`deferring`, whose statements this round trip carries anyway), no query log (DEBUG), and
    Django's CursorWrapper not patched by a tracer (Sentry patches its `execute`). Else None:
    the round trip goes through `connection.cursor()`. Django's cursor and its wrapper cost a
    step about a tenth of its CPU (a cursor made and closed, a context and a wrapper chain, per
    round trip); what they do that matters is kept in `_send`: no query in a transaction that
    must roll back, the driver's errors as Django's."""
    session = conn.connection
    if session is None:
        return None  # not connected yet: Django's cursor connects
    kept = conn.__dict__.get("_slct_cursor")
    if kept is None or kept[0] is not session:  # a new connection
        cursor = None
        if conn.vendor == "postgresql":
            with conn.wrap_database_errors:
                cursor = conn.create_cursor()
            if not _client_side(cursor):
                cursor = None  # server-side binding: each statement its own call, through Django
            else:
                _parse_timestamps_in_c(conn, cursor)
        kept = conn._slct_cursor = (session, cursor)
    cursor = kept[1]
    if cursor is None or conn.queries_logged or (conn.health_check_enabled and not conn.health_check_done):
        return None
    if conn.execute_wrappers and any(w is not _send_deferred_first for w in conn.execute_wrappers):
        return None
    if getattr(CursorWrapper.execute, "__module__", None) != "django.db.backends.utils":
        return None
    return cursor


def _parse_timestamps_in_c(conn: Any, cursor: Any) -> None:
    """Django reads every timestamptz through its own Python subclass of psycopg's loader (to set
    its time zone on the value), which keeps psycopg's C loader out: py-spy put parsing the step's
    timestamps at about 7% of its CPU. Where the C loader gives the very same value, because the
    session's time zone is Django's (USE_TZ, as Django sets up its connections), the kept cursor
    uses psycopg's own loader (psycopg swaps in its C version where it is installed)."""
    from psycopg.types.datetime import TimestamptzLoader

    if conn.timezone is not None and cursor.connection.info.timezone == conn.timezone:
        cursor.adapters.register_loader("timestamptz", TimestamptzLoader)


# -- prepared statements ------------------------------------------------------------------------

class _Prepared:
    """The statements PREPAREd on one database session: SQL -> name (None: PostgreSQL would not
    prepare it; it is sent as it is)."""

    def __init__(self, session: Any, *, stale: bool = False) -> None:
        self.session = session
        self.names: dict[str, str | None] = {}
        self.stale = stale  # the session's statements are not to be trusted: DEALLOCATE ALL first


def _executes(conn: Any, statements: Sequence[tuple[str, Sequence[Any], bool]], prepares: bool) -> list[str]:
    """Each `(sql, params, prepare)` as sent in a multi-statement round trip: `EXECUTE name(%s,
    ...)` of a statement PREPAREd once on this session, so PostgreSQL parses and plans it once
    per connection instead of at every step (planning was most of its CPU for these short
    statements); the parameters are bound client-side as before. PREPARE is the SQL command,
    not the protocol's: it works inside the one multi-statement round trip, and it is not
    undone by a rollback. `prepares` is SLCT_PREPARED_STATEMENTS, as the caller read it (off
    behind a pooler that moves a connection between sessions): when off, the SQL as written."""
    if not prepares:
        return [sql for sql, _, _ in statements]
    prepared = _session_prepared(conn)
    new = [sql for sql, _, prepare in statements if prepare and sql not in prepared.names]
    if new:
        _prepare(conn, prepared, dict.fromkeys(new))
    texts = []
    for sql, params, prepare in statements:
        name = prepared.names.get(sql) if prepare else None
        if name is None:
            texts.append(sql)
        else:
            texts.append(f"EXECUTE {name}({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {name}")
    return texts


def expand(text: str) -> str:
    """A round trip's text as the statements it ran: each `EXECUTE slct_...(...)` of this
    session replaced by the SQL that was PREPAREd under that name (for logs and tests)."""
    prepared = getattr(connection, "_slct_prepared", None)
    if prepared is None:
        return text
    by_name = {name: sql for sql, name in prepared.names.items() if name}
    return _EXECUTE.sub(lambda m: by_name.get(m.group(1), m.group(0)), text)


_EXECUTE = re.compile(r"EXECUTE (slct_\w+)(?:\([^;]*\))?")


def _send(conn: Any, cursor: Any, text: str, params: list[Any]) -> None:
    """Run the round trip's text on Django's cursor, or on psycopg's (`_direct_cursor`) with
    what Django's cursor would check and convert."""
    try:
        if isinstance(cursor, CursorWrapper):
            cursor.execute(text, params)
        else:
            conn.validate_no_broken_transaction()
            with conn.wrap_database_errors:
                cursor.execute(text, params)
    except DatabaseError as exc:
        prepared = getattr(conn, "_slct_prepared", None)
        if prepared is not None and _unusable(exc):
            # The transaction is aborted now: the next one deallocates them all and prepares again.
            conn._slct_prepared = _Prepared(prepared.session, stale=True)
            raise PreparedStatementsLost(f"this connection's prepared statements cannot be used: {exc}") from exc
        raise


def _unusable(exc: DatabaseError) -> bool:
    """26000: no prepared statement of that name on this session. 0A000 "cached plan must not
    change result type": a migration changed the type of a column a prepared SELECT returns;
    it fails the same way until the statement is prepared again."""
    code = getattr(exc.__cause__, "sqlstate", None)
    return code == "26000" or (code == "0A000" and "cached plan" in str(exc))


def _session_prepared(conn: Any) -> _Prepared:
    session = conn.connection
    prepared = getattr(conn, "_slct_prepared", None)
    if prepared is None or prepared.session is not session:  # a new connection: nothing prepared
        prepared = conn._slct_prepared = _Prepared(session)
    if prepared.stale:
        with conn.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")  # not transactional: holds whatever follows
        prepared.stale = False
    return prepared


_PLACEHOLDER = re.compile(r"%[s%]")
_TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', re.IGNORECASE | re.ASCII)


def _statement_name(sql: str) -> str:
    """A name that says what the statement does (in the query log: `EXECUTE
    slct_update_slct_workflows_goroutine_<hash>(...)`) and is unique for its text."""
    verb = re.sub(r"\W", "", sql.split(None, 1)[0].lower(), flags=re.ASCII) or "statement"
    table = _TABLE.search(sql)
    readable = f"{verb}_{table.group(1).lower()}" if table else verb
    return f"slct_{readable[:40]}_{hashlib.sha1(sql.encode()).hexdigest()[:16]}"


def _prepare(conn: Any, prepared: _Prepared, sqls: Iterable[str]) -> None:
    """PREPARE each statement on this session (once per connection: a round trip each), in a
    savepoint inside a transaction, so one PostgreSQL refuses (class 42: a parameter whose type
    it cannot infer) leaves the transaction as it was and is sent unprepared from then on."""
    for sql in sqls:
        name = _statement_name(sql)
        numbers = itertools.count(1)
        text = _PLACEHOLDER.sub(lambda m: f"${next(numbers)}" if m.group() == "%s" else "%", sql)
        try:
            with transaction.atomic(using=conn.alias, savepoint=conn.in_atomic_block), conn.cursor() as cursor:
                cursor.execute(f"PREPARE {name} AS {text}")
        except DatabaseError as exc:
            code = getattr(exc.__cause__, "sqlstate", None) or ""
            if code != "42P05":  # 42P05: already prepared on this session (kept)
                if not code.startswith("42"):
                    raise  # not the statement: the connection or the transaction (the step reruns)
                prepared.names[sql] = None  # class 42: PostgreSQL cannot prepare this one
                continue
        prepared.names[sql] = name


def _together(conn: Any, raw_cursor: Any) -> bool:
    return conn.vendor == "postgresql" and _client_side(raw_cursor)


def _client_side(raw_cursor: Any) -> bool:
    try:
        from psycopg import ClientCursor
    except ImportError:  # psycopg2: one statement per call, as everywhere else
        return False
    return isinstance(raw_cursor, ClientCursor)


class FixedSave:
    """`obj.save()` for a row that exists, with the UPDATE written once instead of compiled at
    every step. It writes every column but the `fixed` ones (set when the row is created and
    never changed: sending them again cost the step their preparation, a JSON encoding of a
    process's input among them). Values are prepared by each field exactly as `save()` prepares
    them (`pre_save`, `get_db_prep_save`: auto_now, JSON adaptation), and the model's
    pre_save/post_save signals are sent as `save(update_fields=...)` sends them."""

    def __init__(self, model: type[Model], fixed: Sequence[str] = ()) -> None:
        self.model = model
        fixed_fields = {model._meta.get_field(name) for name in fixed}
        self.fields = [f for f in model._meta.local_concrete_fields if not f.primary_key and f not in fixed_fields]
        self.update_fields = frozenset(f.name for f in self.fields) if fixed_fields else None
        self.sql: dict[str, str] = {}

    def __call__(self, obj: Model) -> None:
        with self.saving(obj) as statement:
            execute_together([statement])

    @contextmanager
    def saving(self, obj: Model) -> Iterator[Statement]:
        """Sends pre_save, yields the UPDATE for the caller to run (with others), then post_save."""
        from django.db.models.signals import post_save, pre_save

        meta = self.model._meta
        conn = connections[obj._state.db or "default"]
        sql = self.sql.get(conn.vendor)
        if sql is None:
            qn = conn.ops.quote_name
            sets = ", ".join(f"{qn(f.column)} = %s" for f in self.fields)
            sql = self.sql[conn.vendor] = f"UPDATE {qn(meta.db_table)} SET {sets} WHERE {qn(meta.pk.column)} = %s"
        pre_save.send(sender=self.model, instance=obj, raw=False, using=conn.alias, update_fields=self.update_fields)
        params = [f.get_db_prep_save(f.pre_save(obj, False), conn) for f in self.fields]
        params.append(meta.pk.get_db_prep_value(obj.pk, conn))
        yield Statement(sql, params, 1, f"{self.model.__name__} {obj.pk!r}")
        post_save.send(sender=self.model, instance=obj, created=False, update_fields=self.update_fields, raw=False,
                       using=conn.alias)


class FixedInsert:
    """`Model.objects.bulk_create(objs)` without reading ids back, the INSERT written once per
    row count. Values are prepared as the ORM prepares them (`pre_save` with add=True: defaults,
    auto_now_add; `get_db_prep_save`). No signals: like bulk_create."""

    def __init__(self, model: type[Model]) -> None:
        self.model = model
        self.fields = [f for f in model._meta.local_concrete_fields if not f.primary_key]
        self.sql: dict[tuple[str, int], str] = {}

    def __call__(self, objs: Sequence[Model]) -> None:
        if objs:
            execute_together([self.statement(objs)])

    def statement(self, objs: Sequence[Model]) -> Statement:
        conn = connections[objs[0]._state.db or "default"]
        key = (conn.vendor, len(objs))
        sql = self.sql.get(key)
        if sql is None:
            qn = conn.ops.quote_name
            row = "(" + ", ".join(["%s"] * len(self.fields)) + ")"
            sql = self.sql[key] = (
                f"INSERT INTO {qn(self.model._meta.db_table)} ({', '.join(qn(f.column) for f in self.fields)}) "
                f"VALUES {', '.join([row] * len(objs))}"
            )
        params = [f.get_db_prep_save(f.pre_save(obj, True), conn) for obj in objs for f in self.fields]
        return Statement(sql, params, len(objs), f"{self.model.__name__} insert")


class FixedWrite:
    """A fixed `UPDATE table SET a = %s, b = b + 1 ... WHERE k = %s [AND k2 = %s]` or `DELETE FROM
    table WHERE ...`, written once; values are prepared by the model's fields. Returns the row
    count. `where` names one field (the key is a value) or several (the key is a tuple)."""

    def __init__(self, model: type[Model], *, where: str | Sequence[str], set: Sequence[str] = (),
                 increment: Sequence[str] = (), delete: bool = False) -> None:
        meta = model._meta
        self.model = model
        self.single = isinstance(where, str)
        self.where = [meta.get_field(name) for name in ([where] if isinstance(where, str) else where)]
        self.set_fields = [meta.get_field(name) for name in set]
        self.increment = [meta.get_field(name) for name in increment]
        self.delete = delete
        self.sql: dict[str, str] = {}

    def __call__(self, key: Any, **values: Any) -> int:
        st = self.statement(key, **values)
        with connection.cursor() as cursor:
            cursor.execute(st.sql, st.params)
            return cursor.rowcount

    def statement(self, key: Any, *, expect: int | None = None, conflict: bool | Callable[[], None] = False,
                  **values: Any) -> Statement:
        """The write, to run with others through `execute_together` (row count checked against
        `expect` if given)."""
        conn = connections[DEFAULT_DB_ALIAS]
        sql = self.sql.get(conn.vendor)
        if sql is None:
            qn, table = conn.ops.quote_name, conn.ops.quote_name(self.model._meta.db_table)
            where = " AND ".join(f"{qn(f.column)} = %s" for f in self.where)
            if self.delete:
                sql = f"DELETE FROM {table} WHERE {where}"
            else:
                sets = [f"{qn(f.column)} = %s" for f in self.set_fields]
                sets += [f"{qn(f.column)} = {qn(f.column)} + 1" for f in self.increment]
                sql = f"UPDATE {table} SET {', '.join(sets)} WHERE {where}"
            self.sql[conn.vendor] = sql
        params = [f.get_db_prep_save(values[f.name], conn) for f in self.set_fields]
        keys = [key] if self.single else list(key)
        params += [f.get_db_prep_value(k, conn) for f, k in zip(self.where, keys)]
        return Statement(sql, params, expect, f"{self.model.__name__} {key!r}", conflict=conflict)
