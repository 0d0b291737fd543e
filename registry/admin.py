"""Admin screens; every change goes through the registry services, so it is in the history."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from accounts.actors import Actor, Source
from config.errors import DomainError
from registry import selectors, services
from registry.choices import Stage, event_outcome
from registry.models import (
    Event,
    ModelAlias,
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelTag,
)
from registry.permissions import (
    Level,
    can_create_models,
    model_level,
    transition_level,
    visible_models,
)
from registry.refusals import refusal_record
from registry.services.versions import ARCHIVING_TARGETS
from registry.validation import validate_model_name


def admin_actor(request: HttpRequest) -> Actor:
    return Actor.from_request(request, source=Source.ADMIN)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ModelTagInline(ReadOnlyInline):
    model = RegisteredModelTag
    fields = ["key", "value"]


class AliasInline(ReadOnlyInline):
    model = ModelAlias
    fields = ["alias", "version", "updated_at"]


class VersionInline(ReadOnlyInline):
    model = ModelVersion
    fields = ["version", "stage", "source", "run_id", "created_by", "created_at"]
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(deleted_at__isnull=True)


class ServiceAdminMixin:
    """Admin screens over the registry services, limited to what the staff member's grants allow.

    Superusers see everything; other staff see the models they may read and act as their level
    allows: edit with CAN_EDIT, rename and delete with CAN_MANAGE, stages with the staging or
    production level. A refused service call is an admin error message, not a 500.
    """

    def actor(self, request: HttpRequest) -> Actor:
        actor = getattr(request, "_modelgate_admin_actor", None)
        if actor is None:
            actor = admin_actor(request)
            request._modelgate_admin_actor = actor  # type: ignore[attr-defined]
        return actor

    def registered_model(self, obj: Any) -> RegisteredModel:
        return obj if isinstance(obj, RegisteredModel) else obj.model

    def level(self, request: HttpRequest, obj: Any) -> Level:
        return model_level(self.actor(request), self.registered_model(obj))

    def _staff(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._staff(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._staff(request) and (obj is None or self.level(request, obj) >= Level.CAN_READ)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._staff(request) and (obj is None or self.level(request, obj) >= Level.CAN_EDIT)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._staff(request) and (
            obj is None or self.level(request, obj) >= Level.CAN_MANAGE
        )

    def refuse(self, request: HttpRequest, obj: Any, needed: Level) -> bool:
        """True (and an error message) when the staff member lacks `needed` on obj's model."""
        have = self.level(request, obj)
        if have >= needed:
            return False
        self.message_user(  # type: ignore[attr-defined]
            request, f"{obj}: {needed.name} is needed; you have {have.name}.", messages.ERROR
        )
        return True

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> list[dict]:
        # The inlines are read-only and never saved (see save_related), so they have nothing to
        # report; Django's default would read `new_objects`, which only a saved formset has.
        return super().construct_change_message(request, form, [], add)  # type: ignore[misc]

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        except DomainError as exc:
            return self._refused(request, exc)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)  # type: ignore[misc]
        except DomainError as exc:
            return self._refused(request, exc)

    def _refused(self, request: HttpRequest, exc: DomainError) -> HttpResponse:
        """A service refused a save or a deletion (a stage or an alias a policy guards):
        the admin's transaction rolled back, so the refusal is recorded now, and told."""
        refusal_record(exc)
        self.message_user(request, exc.message, level=messages.ERROR)  # type: ignore[attr-defined]
        return HttpResponseRedirect(request.get_full_path())

    def run_service(self, request: HttpRequest, call: Any, **kwargs: Any) -> bool:
        try:
            call(actor=self.actor(request), **kwargs)
        except DomainError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)  # type: ignore[attr-defined]
            return False
        return True


class RegisteredModelForm(forms.ModelForm):
    class Meta:
        model = RegisteredModel
        fields = ["name", "description"]

    def clean_name(self) -> str:
        # The service's rules, checked here so a refused name is a form error and not a 500.
        try:
            return validate_model_name(self.cleaned_data["name"])
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(RegisteredModel)
class RegisteredModelAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = RegisteredModelForm
    list_display = ["name", "last_version", "created_by", "updated_at", "history_link"]
    search_fields = ["name"]
    readonly_fields = ["last_version", "created_by", "created_at", "updated_at", "history_link"]
    fields = ["name", "description", *readonly_fields]
    inlines = [ModelTagInline, AliasInline, VersionInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return visible_models(self.actor(request), super().get_queryset(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._staff(request) and can_create_models(self.actor(request))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and self.level(request, obj) < Level.CAN_MANAGE:
            fields.append("name")  # renaming needs CAN_MANAGE
        return fields

    @admin.display(description="History")
    def history_link(self, obj: RegisteredModel) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:registry_event_changelist") + f"?model_id__exact={obj.pk}"
        return format_html('<a href="{}">events</a>', url)

    def save_model(
        self, request: HttpRequest, obj: RegisteredModel, form: Any, change: bool
    ) -> None:
        actor = self.actor(request)
        if not change:
            created = services.model_create(name=obj.name, description=obj.description, actor=actor)
            obj.pk = created.pk
            return
        stored = RegisteredModel.objects.get(pk=obj.pk)
        if obj.name != stored.name:
            services.model_rename(model=stored, new_name=obj.name, actor=actor)
        if obj.description != stored.description:
            services.model_update(model=stored, description=obj.description, actor=actor)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Inlines are read-only: nothing to save besides what save_model did."""

    def delete_model(self, request: HttpRequest, obj: RegisteredModel) -> None:
        services.model_delete(model=obj, actor=self.actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for model in queryset:
            if not self.refuse(request, model, Level.CAN_MANAGE):
                services.model_delete(model=model, actor=self.actor(request))


class VersionForm(forms.ModelForm):
    archive_existing_versions = forms.BooleanField(
        required=False, help_text="When moving to Staging or Production, archive the others."
    )

    class Meta:
        model = ModelVersion
        fields = ["description", "stage"]

    # Set by ModelVersionAdmin.get_form: the editor's level on the version's model.
    editor_level: Level = Level.NONE

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        stage = cleaned.get("stage")
        if cleaned.get("archive_existing_versions") and stage not in ARCHIVING_TARGETS:
            self.add_error("archive_existing_versions", "Only for Staging or Production.")
        if stage and stage != self.instance.stage:
            needed = transition_level(self.instance.stage, stage)
            if self.editor_level < needed:
                self.add_error("stage", f"Moving to or from this stage needs {needed.name}.")
        return cleaned


class VersionTagInline(ReadOnlyInline):
    model = ModelVersionTag
    fields = ["key", "value"]


@admin.register(ModelVersion)
class ModelVersionAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = VersionForm
    list_display = ["model", "version", "stage", "aliases_list", "created_by", "created_at"]
    list_filter = ["stage"]
    search_fields = ["model__name", "run_id"]
    list_select_related = ["model", "created_by"]
    readonly_fields = [
        "model",
        "version",
        "source",
        "run_id",
        "run_link",
        "status",
        "aliases_list",
        "created_by",
        "created_at",
        "updated_at",
    ]
    fields = ["description", "stage", "archive_existing_versions", *readonly_fields]
    inlines = [VersionTagInline]
    actions = ["archive_versions"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        visible = visible_models(self.actor(request), RegisteredModel.objects.all())
        return (
            super()
            .get_queryset(request)
            .filter(deleted_at__isnull=True, model__in=visible)
            .prefetch_related("aliases")
        )

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.editor_level = self.level(request, obj) if obj is not None else Level.NONE  # type: ignore[attr-defined]
        return form

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and self.level(request, obj) < Level.CAN_MANAGE_STAGING_VERSIONS:
            fields.append("stage")
        return fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from pipelines (API or mlflow client), not by hand

    @admin.display(description="Aliases")
    def aliases_list(self, obj: ModelVersion) -> str:
        return ", ".join(alias.alias for alias in obj.aliases.all()) or "-"

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: Any, change: bool) -> None:
        actor = self.actor(request)
        stored = ModelVersion.objects.select_related("model").get(pk=obj.pk)
        if obj.description != stored.description:
            services.version_update(version=stored, description=obj.description, actor=actor)
        if obj.stage != stored.stage:
            services.version_transition(
                version=stored,
                stage=Stage(obj.stage),
                archive_existing=form.cleaned_data.get("archive_existing_versions", False),
                actor=actor,
            )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Inlines are read-only: nothing to save besides what save_model did."""

    def delete_model(self, request: HttpRequest, obj: ModelVersion) -> None:
        services.version_delete(version=obj, actor=self.actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for version in queryset.select_related("model"):
            if not self.refuse(request, version, Level.CAN_MANAGE):
                self.run_service(request, services.version_delete, version=version)

    @admin.action(description="Archive the selected versions")
    def archive_versions(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = sum(
            not self.refuse(request, version, transition_level(version.stage, Stage.ARCHIVED))
            and self.run_service(
                request, services.version_transition, version=version, stage=Stage.ARCHIVED
            )
            for version in queryset.select_related("model")
        )
        self.message_user(request, f"Archived {done} version(s).")


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """The history, read-only: events are written by services alone."""

    list_display = [
        "seq",
        "created_at",
        "type",
        "outcome",
        "actor_name",
        "source",
        "model_name",
        "version",
    ]
    list_filter = ["type", "source"]
    search_fields = ["model_name", "actor_name", "request_id"]
    date_hierarchy = "created_at"
    ordering = ["-seq"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.event_list(viewer=admin_actor(request)).order_by("-seq")

    @admin.display(description="Outcome")
    def outcome(self, obj: Event) -> str:
        return event_outcome(obj.type).value

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in Event._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
