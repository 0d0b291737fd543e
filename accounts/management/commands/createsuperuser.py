"""Django's createsuperuser, with the user it makes recorded in the history."""

from typing import Any

from django.contrib.auth.management.commands import createsuperuser

from accounts.actors import Actor
from accounts.audit import user_saves_recorded


class Command(createsuperuser.Command):
    def handle(self, *args: Any, **options: Any) -> None:
        with user_saves_recorded(Actor.shell()):
            super().handle(*args, **options)
