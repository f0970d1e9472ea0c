"""What a CaptureQueriesContext saw, as the code under test sent it: PostgreSQL's one-time
preparation of a fixed statement on a connection (`PREPARE` in a savepoint of its own,
fixed_sql._prepare) is left out, and each `EXECUTE slct_...` shows the SQL it runs."""
from __future__ import annotations

from typing import Iterable

from slct_workflows.runtime.fixed_sql import expand


def sent(captured: Iterable[dict], leave_out: tuple[str, ...] = ("BEGIN", "COMMIT", "ROLLBACK")) -> list[str]:
    texts = [q["sql"] for q in captured]
    preparation: set[int] = set()
    for i, text in enumerate(texts):
        if text.startswith("PREPARE "):
            preparation.add(i)
            if i and texts[i - 1].startswith("SAVEPOINT "):
                preparation.add(i - 1)
            if i + 1 < len(texts) and texts[i + 1].startswith("RELEASE SAVEPOINT "):
                preparation.add(i + 1)
    return [expand(text) for i, text in enumerate(texts)
            if i not in preparation and text.split(None, 1)[0].upper() not in leave_out]
