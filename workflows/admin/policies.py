"""Policies in the admin: added, changed and deleted through the policy services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from config.errors import AlreadyExists, DomainError
from registry.admin import ServiceAdminMixin
from registry.models import RegisteredModel
from registry.permissions import GRANTABLE, Level, visible_models
from workflows import policies, selectors
from workflows.models import Policy


class _DryRun(Exception):
    """Raised to roll back a service call made only to learn whether it would be refused."""


class PolicyForm(forms.ModelForm):
    approver_level = forms.ChoiceField(
        required=False,
        choices=[("", "(default for the target)")] + [(lvl.name, lvl.name) for lvl in GRANTABLE],
        help_text="Default: CAN_MANAGE_PRODUCTION_VERSIONS for Production and aliases, "
        "CAN_MANAGE_STAGING_VERSIONS otherwise.",
    )

    class Meta:
        model = Policy
        fields = [
            "model",
            "target",
            "required_approvals",
            "approver_level",
            "allow_self_approval",
            "required_tags",
            "expires_after_hours",
            "archive_existing_versions",
            "move_alias",
        ]
        help_texts = {
            "model": "Empty: a registry-wide policy (superusers only).",
            "target": "Staging, Production, Archived or alias:<name> (a protected alias).",
            "required_tags": 'Tags the version must carry, e.g. {"validation": "passed"}.',
            "expires_after_hours": "Empty: requests never expire.",
            "move_alias": "For a stage target: an alias that moves with the promotion.",
        }

    # Set by PolicyAdmin.get_form: who is saving, so clean() can ask the service.
    actor: Any = None

    def service_values(self) -> dict[str, Any]:
        """What to hand the policy service: every field on add, the changed ones on change."""
        names = [name for name in self.fields if name not in ("model", "target")]
        if self.instance.pk is not None:
            names = [name for name in names if name in self.changed_data]
        values = {name: self.cleaned_data.get(name) for name in names}
        if not values.get("approver_level"):
            values.pop("approver_level", None)  # the service picks the target's default
        if "required_tags" in values and values["required_tags"] is None:
            values["required_tags"] = {}
        return values

    def save_through_service(self) -> Policy:
        if self.instance.pk is None:
            return policies.policy_create(
                actor=self.actor,
                model=self.cleaned_data.get("model"),
                target=self.cleaned_data["target"],
                **self.service_values(),
            )
        return policies.policy_update(
            actor=self.actor, policy=self.instance, **self.service_values()
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        # The service's own rules (permission, target, levels, tags, uniqueness), checked here
        # so a refusal is a form error and not a 500: run it and roll it back.
        try:
            with transaction.atomic():
                self.save_through_service()
                raise _DryRun
        except _DryRun:
            pass
        except AlreadyExists as exc:
            # On the target field: a field with an error is left out of the model's own
            # constraint check, which would say the same in less helpful words.
            self.add_error("target" if "target" in self.fields else None, exc.message)
        except DomainError as exc:
            placed = False
            for field, errors in exc.fields.items():
                if field in self.fields:
                    self.add_error(field, errors)
                    placed = True
            if not placed:
                self.add_error(None, exc.message)
        return cleaned


@admin.register(Policy)
class PolicyAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """Registry-wide policies are the superusers'; a model's, its CAN_MANAGE holders'."""

    form = PolicyForm
    list_display = [
        "target",
        "scope",
        "required_approvals",
        "approver_level",
        "allow_self_approval",
        "required_tags",
        "expires_after_hours",
        "archive_existing_versions",
        "move_alias",
    ]
    list_filter = ["target", "allow_self_approval"]
    search_fields = ["target", "model__name"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.policy_list(actor=self.actor(request))

    @admin.display(description="Applies to", ordering="model__name")
    def scope(self, obj: Policy) -> str:
        return obj.model.name if obj.model is not None else "(registry-wide)"

    def may_manage(self, request: HttpRequest, obj: Policy) -> bool:
        if obj.model is None:
            return bool(request.user.is_active and request.user.is_superuser)
        return self.level(request, obj) >= Level.CAN_MANAGE

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Registry-wide policies bind every model: any staff member may read them.
        return self._staff(request) and (
            obj is None or obj.model is None or self.level(request, obj) >= Level.CAN_READ
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._staff(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._staff(request) and (obj is None or self.may_manage(request, obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields += ["model", "target"]  # a policy keeps its scope and target; add another
        return fields

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.actor = self.actor(request)  # type: ignore[attr-defined]
        return form

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "model":
            kwargs["queryset"] = visible_models(self.actor(request), RegisteredModel.objects.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Policy, form: Any, change: bool) -> None:
        if change and not form.service_values():
            return  # nothing changed: no event
        saved = form.save_through_service()
        obj.pk, obj.target = saved.pk, saved.target

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """No related objects: save_model did everything."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # clean() asked the service already; a refusal here is a race lost since (say, the same
        # policy added meanwhile). The admin's transaction rolled it back: say so, no 500.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request: HttpRequest, obj: Policy) -> None:
        policies.policy_delete(actor=self.actor(request), policy=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for policy in queryset.select_related("model"):
            if self.may_manage(request, policy):
                policies.policy_delete(actor=self.actor(request), policy=policy)
            else:
                self.message_user(
                    request, f"{policy}: you may not delete this policy.", messages.ERROR
                )
