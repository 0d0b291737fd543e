"""Create or update the superuser `admin` (idempotent, run by `make run` on every start)."""

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create or update the superuser 'admin' (password from MODELGATE_ADMIN_PASSWORD)."

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        password = os.environ.get("MODELGATE_ADMIN_PASSWORD", "")
        user, created = user_model.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        changed = not (user.is_staff and user.is_superuser and user.is_active)
        user.is_staff = user.is_superuser = user.is_active = True
        if password:
            if not user.check_password(password):
                user.set_password(password)
                changed = True
        elif created or not user.has_usable_password():
            password = secrets.token_urlsafe(18)
            user.set_password(password)
            changed = True
            self.stdout.write(
                self.style.WARNING(
                    f"Created superuser 'admin' with password: {password}\n"
                    "It is shown only this once; set MODELGATE_ADMIN_PASSWORD to choose one."
                )
            )
        if changed or created:
            user.save()
        if not created and not changed:
            self.stdout.write("Superuser 'admin' is up to date.")
