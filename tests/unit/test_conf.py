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
