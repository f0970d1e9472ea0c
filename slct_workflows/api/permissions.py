"""Model permissions per endpoint and method.

Each view declares `required_permissions = {"GET": [...], "POST": [...]}` (codenames of the
`slct_workflows` app). A method not listed needs nothing beyond being authenticated; HEAD and
OPTIONS follow GET.
"""
from __future__ import annotations

from rest_framework.permissions import BasePermission

APP = "slct_workflows"

VIEW_PROCESS = f"{APP}.view_processinstance"
START_PROCESS = f"{APP}.add_processinstance"
CHANGE_PROCESS = f"{APP}.change_processinstance"
VIEW_CHANNEL = f"{APP}.view_channel"
ADD_CHANNEL = f"{APP}.add_channel"
CHANGE_CHANNEL = f"{APP}.change_channel"
VIEW_SEND = f"{APP}.view_externalsend"
ADD_SEND = f"{APP}.add_externalsend"


class SlctPermission(BasePermission):
    message = "You do not have permission to perform this action."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        required = getattr(view, "required_permissions", {})
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        perms = required.get(method, [])
        if perms and not user.has_perms(perms):
            self.message = "You need the permission(s) " + ", ".join(perms) + " for this action."
            return False
        return True
