import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create (or reset) the local admin user and print its login and API token."

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("SLCT_ADMIN_USER", "admin")
        password = os.environ.get("SLCT_ADMIN_PASSWORD") or secrets.token_urlsafe(9)
        user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@localhost"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(f"admin login: {username} / {password}   API token: {token.key}")
