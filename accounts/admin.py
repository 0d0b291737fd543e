"""API tokens in the admin: issued with the secret shown once, revoked by action."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import ApiToken
from accounts.tokens import token_create, token_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "name",
        "user",
        "read_only",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["read_only"]
    search_fields = ["prefix", "name", "user__username"]
    autocomplete_fields = ["models"]
    actions = ["revoke_tokens"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        if obj is None:
            return ["user", "name", "read_only", "expires_at", "models"]
        return [
            "user",
            "name",
            "prefix",
            "read_only",
            "models",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        if obj is None:
            return []
        # An issued token's reach is fixed; to change it, issue another and revoke this one.
        return ["user", "prefix", "read_only", "models", "created_at", "last_used_at", "revoked_at"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = token_create(
            user=obj.user,
            name=obj.name,
            read_only=obj.read_only,
            models=list(form.cleaned_data.get("models", [])),
        )
        if obj.expires_at:
            issued.token.expires_at = obj.expires_at
            issued.token.save(update_fields=["expires_at"])
        obj.pk = issued.token.pk
        obj.prefix = issued.token.prefix
        self.message_user(
            request,
            f"Token issued: {issued.secret} — copy it now, it will not be shown again.",
            level=messages.WARNING,
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if change:
            super().save_related(request, form, formsets, change)

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet) -> None:
        for token in queryset:
            token_revoke(token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")
