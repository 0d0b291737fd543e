"""Comments in the admin: a read-only list of what the staff member may see."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from registry.admin import ServiceAdminMixin
from registry.models import RegisteredModel
from registry.permissions import visible_models
from workflows.models import Comment


@admin.register(Comment)
class CommentAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """Read-only: comments are written through the API by their authors."""

    list_display = ["version", "author_name", "excerpt", "created_at", "updated_at"]
    search_fields = ["version__model__name", "author_name", "text"]
    list_select_related = ["version__model"]
    fields = ["version", "author_name", "text", "created_at", "updated_at"]
    readonly_fields = ["version", "author_name", "text", "created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        visible = visible_models(self.actor(request), RegisteredModel.objects.all())
        return (
            super()
            .get_queryset(request)
            .filter(version__model__in=visible, version__deleted_at__isnull=True)
        )

    def registered_model(self, obj: Any) -> RegisteredModel:
        return obj.version.model

    @admin.display(description="Text")
    def excerpt(self, obj: Comment) -> str:
        return obj.text if len(obj.text) <= 80 else obj.text[:79] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
