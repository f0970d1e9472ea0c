"""Settings read through slct_workflows.conf (no database)."""
import pytest
from django.core.exceptions import ImproperlyConfigured

from slct_workflows import conf


def test_workflow_modules_are_trimmed(settings):
    settings.SLCT_WORKFLOW_MODULES = "a.workflows, b.workflows ,, "
    assert conf.workflow_modules() == ["a.workflows", "b.workflows"]


def test_workflow_modules_must_be_a_list(settings):
    settings.SLCT_WORKFLOW_MODULES = 5
    with pytest.raises(ImproperlyConfigured):
        conf.workflow_modules()


def test_group_commit_settings_have_safe_defaults(settings):
    for name in ("SLCT_GROUP_STEPS", "SLCT_GROUP_MS", "SLCT_GROUP_LOCK_WAIT_MS"):
        if hasattr(settings, name):
            delattr(settings, name)
    assert (conf.group_steps(), conf.group_ms(), conf.group_lock_wait_ms()) == (16, 5.0, 2)


@pytest.mark.parametrize("name, value", [
    ("SLCT_GROUP_STEPS", 0), ("SLCT_GROUP_STEPS", "many"), ("SLCT_GROUP_MS", -1),
    ("SLCT_GROUP_LOCK_WAIT_MS", 0), ("SLCT_GROUP_LOCK_WAIT_MS", "2ms"),
])
def test_group_commit_settings_refuse_bad_values(settings, name, value):
    setattr(settings, name, value)
    reader = {"SLCT_GROUP_STEPS": conf.group_steps, "SLCT_GROUP_MS": conf.group_ms,
              "SLCT_GROUP_LOCK_WAIT_MS": conf.group_lock_wait_ms}[name]
    with pytest.raises(ImproperlyConfigured, match=name):
        reader()


def test_a_step_setting_is_read_once_per_process_until_a_setting_changes(settings, monkeypatch):
    """The settings a step reads are remembered (looked up at every step, they cost ~2% of its
    CPU): a change in the environment shows after conf.reset(), a Django setting at once."""
    if hasattr(settings, "SLCT_WAKE_BATCH"):
        delattr(settings, "SLCT_WAKE_BATCH")
    monkeypatch.setenv("SLCT_WAKE_BATCH", "7")
    conf.reset()
    try:
        assert conf.wake_batch() == 7
        monkeypatch.setenv("SLCT_WAKE_BATCH", "9")
        assert conf.wake_batch() == 7
        conf.reset()
        assert conf.wake_batch() == 9
        settings.SLCT_WAKE_BATCH = 11  # override_settings, pytest-django: setting_changed clears them
        assert conf.wake_batch() == 11
    finally:
        conf.reset()


def test_a_bad_step_setting_raises_at_every_read(settings):
    settings.SLCT_WAKE_BATCH = 0
    for _ in range(2):
        with pytest.raises(ImproperlyConfigured, match="SLCT_WAKE_BATCH"):
            conf.wake_batch()
