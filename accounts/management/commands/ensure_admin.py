"""Create or update the superuser `admin` (idempotent, run by `make run` on every start)."""

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.actors import Actor
from accounts.audit import AccountEvent, account_event_record, user_snapshot
from config.env import env_secret


class Command(BaseCommand):
    help = (
        "Create or update the superuser 'admin' "
        "(password from MODELGATE_ADMIN_PASSWORD or MODELGATE_ADMIN_PASSWORD_FILE)."
    )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        password = env_secret("MODELGATE_ADMIN_PASSWORD") or ""
        user, created = user_model.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        before = None if created else user_snapshot(user)
        changed = not (user.is_staff and user.is_superuser and user.is_active)
        user.is_staff = user.is_superuser = user.is_active = True
        password_set = False
        if password:
            if not user.check_password(password):
                user.set_password(password)
                password_set = True
        elif created or not user.has_usable_password():
            password = secrets.token_urlsafe(18)
            user.set_password(password)
            password_set = True
            self.stdout.write(
                self.style.WARNING(
                    f"Created superuser 'admin' with password: {password}\n"
                    "It is shown only this once; set MODELGATE_ADMIN_PASSWORD to choose one."
                )
            )
        if changed or created or password_set:
            user.save()
            if created:
                kind = AccountEvent.USER_CREATED
            else:
                kind = AccountEvent.USER_UPDATED if changed else AccountEvent.USER_PASSWORD_CHANGED
            account_event_record(
                type=kind,
                actor=Actor.shell(),
                before=before,
                after=user_snapshot(user),
            )
        else:
            self.stdout.write("Superuser 'admin' is up to date.")
