"""ChannelPolicy: the declaration workflows write (pure; no database)."""
import pytest

from slct_workflows.policy import OPEN, PRIVATE, RESTRICTED, ChannelPolicy


def test_constructors():
    assert ChannelPolicy.open().policy == OPEN
    assert ChannelPolicy.private().policy == PRIVATE
    r = ChannelPolicy.restricted(permission="app.approve", group="finance")
    assert (r.policy, r.permission, r.group) == (RESTRICTED, "app.approve", "finance")
    assert r.describe() == "restricted to permission app.approve and group finance"


@pytest.mark.parametrize("kwargs", [
    {"policy": "public"},
    {"policy": RESTRICTED},
    {"policy": RESTRICTED, "permission": "no-dot"},
    {"policy": RESTRICTED, "permission": "a.b.c"},
])
def test_invalid_declarations(kwargs):
    with pytest.raises(ValueError):
        ChannelPolicy(**kwargs)


def test_policies_compare_by_value():
    assert ChannelPolicy.restricted(group="g") == ChannelPolicy(RESTRICTED, "", "g")
    assert ChannelPolicy.open() != ChannelPolicy.private()
