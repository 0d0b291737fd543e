from django.apps import AppConfig


class SiteConfig(AppConfig):
    """The project package as an app, so its system checks are registered at start-up."""

    name = "config"
    verbose_name = "Modelgate site"

    def ready(self) -> None:
        from config import (
            checks,  # noqa: F401
            openapi,  # noqa: F401 -- registers the OpenAPI serializer extension
        )
