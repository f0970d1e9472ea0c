"""slct_prune's age argument: days by default, or a number with a unit; anything else refused."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError

from slct_workflows.management.commands.slct_prune import parse_age, positive


@pytest.mark.parametrize("text,age", [
    ("7", timedelta(days=7)), ("0.5", timedelta(hours=12)), ("12h", timedelta(hours=12)),
    ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)), ("30m", timedelta(minutes=30)),
    ("90s", timedelta(seconds=90)), (" 3D ", timedelta(days=3)), ("0", timedelta(0)),
])
def test_ages(text, age):
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["", "d", "7 days", "-1", "1e3", "7y", "12h30m", "nan", "inf", "9" * 20])
def test_bad_ages_are_refused(text):
    with pytest.raises(CommandError, match="--older-than"):
        parse_age(text)


@pytest.mark.parametrize("text", ["0", "-2", "1.5", "x", ""])
def test_counts_must_be_positive_whole_numbers(text):
    with pytest.raises(CommandError, match="--batch"):
        positive("--batch")(text)
    assert positive("--batch")("12") == 12
