"""The admin site: Django's, with the "change my password" page recorded in the history.

Installed in place of `django.contrib.admin` (settings.INSTALLED_APPS names AdminConfig below),
so `admin.site` is this site everywhere.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig
from django.db import transaction
from django.http import HttpRequest
from django.template.response import TemplateResponse


class AdminSite(admin.AdminSite):
    def password_change(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        # Imported here: this module loads with the app configs, before any model may.
        from accounts.actors import Actor, Source
        from accounts.audit import user_saves_recorded

        actor = Actor.from_request(request, source=Source.ADMIN)
        with transaction.atomic(), user_saves_recorded(actor, password=True):
            return super().password_change(request, extra_context)


class AdminConfig(DjangoAdminConfig):
    default_site = "accounts.admin_site.AdminSite"
