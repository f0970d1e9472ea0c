from slct_workflows.pytest_plugin import workflow_registry, workflow_runner  # noqa: F401  (fixtures)
