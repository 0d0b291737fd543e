"""API tokens in the admin: issued with the secret shown once, revoked by action. Users and
groups: Django's screens, with every change recorded in the history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse

from accounts.actors import Actor, Source
from accounts.audit import AccountEvent, account_event_record, group_snapshot, user_snapshot
from accounts.models import ApiToken
from accounts.tokens import token_create, token_revoke, token_update


def _actor(request: HttpRequest) -> Actor:
    return Actor.from_request(request, source=Source.ADMIN)


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

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False  # revoke instead: the row stays, as the history names its prefix

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            token_update(token=obj, actor=_actor(request), name=obj.name, expires_at=obj.expires_at)
            return
        issued = token_create(
            user=obj.user,
            actor=_actor(request),
            name=obj.name,
            read_only=obj.read_only,
            expires_at=obj.expires_at,
            models=list(form.cleaned_data.get("models", [])),
        )
        obj.pk = issued.token.pk
        obj.prefix = issued.token.prefix
        self.message_user(
            request,
            f"Token issued: {issued.secret} — copy it now, it will not be shown again.",
            level=messages.WARNING,
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Nothing: the models are set when the token is issued and fixed after."""

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet) -> None:
        for token in queryset:
            token_revoke(token=token, actor=_actor(request))
        self.message_user(request, f"Revoked {queryset.count()} token(s).")


class _RecordedAdmin(admin.ModelAdmin):
    """Django's own screens for an accounts model, each change recorded as one event."""

    snapshot: Callable[[Any], dict[str, Any]]
    created: AccountEvent
    updated: AccountEvent
    deleted: AccountEvent

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:  # as stored, before the form changes it
            request._modelgate_before = self.snapshot(obj)  # type: ignore[attr-defined]
        return obj

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        account_event_record(type=self.created, actor=_actor(request), after=self.snapshot(obj))
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        before = getattr(request, "_modelgate_before", None)
        after = self.snapshot(obj)
        if getattr(request, "_modelgate_password_change", False):
            account_event_record(
                type=AccountEvent.USER_PASSWORD_CHANGED,
                actor=_actor(request),
                before=before,
                after=after,
            )
        elif after != before:  # saved unchanged: no change, no event
            account_event_record(
                type=self.updated, actor=_actor(request), before=before, after=after
            )
        return super().log_change(request, obj, message)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        with transaction.atomic():
            account_event_record(
                type=self.deleted, actor=_actor(request), before=self.snapshot(obj)
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        with transaction.atomic():
            for obj in queryset:
                account_event_record(
                    type=self.deleted, actor=_actor(request), before=self.snapshot(obj)
                )
            super().delete_queryset(request, queryset)


class UserAdmin(_RecordedAdmin, auth_admin.UserAdmin):
    snapshot = staticmethod(user_snapshot)
    created = AccountEvent.USER_CREATED
    updated = AccountEvent.USER_UPDATED
    deleted = AccountEvent.USER_DELETED

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        request._modelgate_password_change = True  # type: ignore[attr-defined]
        with transaction.atomic():
            return super().user_change_password(request, id, form_url)


class GroupAdmin(_RecordedAdmin, auth_admin.GroupAdmin):
    snapshot = staticmethod(group_snapshot)
    created = AccountEvent.GROUP_CREATED
    updated = AccountEvent.GROUP_UPDATED
    deleted = AccountEvent.GROUP_DELETED


for _model, _admin in ((get_user_model(), UserAdmin), (Group, GroupAdmin)):
    admin.site.unregister(_model)
    admin.site.register(_model, _admin)
