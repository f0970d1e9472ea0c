"""Custom admin pages and operator actions, mounted by the ModelAdmins in slct_workflows.admin.

Every action calls the service layer (slct_workflows.services), asks for confirmation first, and
turns the service's SlctError into an admin error message.
"""
