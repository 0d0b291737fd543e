"""`manage.py create_token USERNAME …`: issue an API token; the token is the last output line."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.actors import Actor
from accounts.tokens import registered_models_named, token_create


class Command(BaseCommand):
    help = "Issue an API token for a user and print it (it is shown only this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for.")
        parser.add_argument("--read-only", action="store_true", help="Refuse every write.")
        parser.add_argument(
            "--model",
            action="append",
            default=[],
            metavar="NAME",
            help="Limit the token to this registered model (repeatable).",
        )
        parser.add_argument("--expires-in-days", type=int, default=None, metavar="N")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named '{options['username']}'.")
        if options["expires_in_days"] is not None and options["expires_in_days"] < 1:
            raise CommandError("--expires-in-days must be at least 1.")
        names = options["model"]
        models = registered_models_named(names)
        missing = sorted(set(names) - {model.name for model in models})
        if missing:
            raise CommandError(f"No registered model named: {', '.join(missing)}.")
        issued = token_create(
            user=user,
            actor=Actor.shell(),
            name=options["name"],
            read_only=options["read_only"],
            expires_in_days=options["expires_in_days"],
            models=models,
        )
        token = issued.token
        details = ["read-only" if token.read_only else "read-write"]
        if token.expires_at:
            details.append(f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC")
        if names:
            details.append(f"models: {', '.join(sorted(names))}")
        self.stderr.write(
            f"Token {token.prefix} for {user.get_username()} ({'; '.join(details)}). "
            "Store it now: it cannot be shown again."
        )
        self.stdout.write(issued.secret)
