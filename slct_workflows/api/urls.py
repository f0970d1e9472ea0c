"""REST API routes (issue 3 fills these in)."""
urlpatterns: list = []
