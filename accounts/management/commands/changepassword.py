"""Django's changepassword, with the change recorded in the history (never the password)."""

from typing import Any

from django.contrib.auth.management.commands import changepassword

from accounts.actors import Actor
from accounts.audit import user_saves_recorded


class Command(changepassword.Command):
    def handle(self, *args: Any, **options: Any) -> str | None:
        with user_saves_recorded(Actor.shell(), password=True):
            return super().handle(*args, **options)
