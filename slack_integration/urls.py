"""Slack endpoints (issue 4 fills these in)."""
urlpatterns: list = []
