"""Admin timelines: a model's or a version's history, newest first, read-only.

Plain admin views (mounted under /admin/ by config/urls.py, behind admin.site.admin_view) rather
than ModelAdmin URLs, so they need nothing from registry/admin.py; the change pages link to them
through their templates (registry/templates/admin/registry/*/change_form.html). A model's
timeline stays reachable after the model is deleted, for registry-wide readers.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_safe

from accounts.actors import Actor, Source
from registry import selectors
from registry.models import Event, ModelVersion, RegisteredModel
from registry.permissions import Level, model_level, sees_every_model

PAGE_SIZE = 100


def _actor(request: HttpRequest) -> Actor:
    return Actor.from_request(request, source=Source.ADMIN)


def _readable(actor: Actor, model_id: int) -> RegisteredModel | None:
    """The model if it still exists; Http404 when the viewer may not read its history."""
    model = RegisteredModel.objects.filter(pk=model_id).first()
    if model is not None:
        if model_level(actor, model) < Level.CAN_READ:
            raise Http404("No such model.")
    elif not sees_every_model(actor) or not Event.objects.filter(model_id=model_id).exists():
        raise Http404("No such model.")
    return model


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def event_change(event: Event) -> str:
    """What an event changed, in a few words: the fields whose value differs before and after."""
    before = event.before if isinstance(event.before, dict) else {}
    after = event.after if isinstance(event.after, dict) else {}
    if event.type.startswith(
        ("model_version_alias.", "model_version_tag.", "registered_model_tag.")
    ):
        key = "alias" if "alias" in (after or before) else "key"
        value = "version" if key == "alias" else "value"
        name = (after or before).get(key, "")
        if not after:
            return f"{name} removed (was {_short(before.get(value))})"
        if not before:
            return f"{name} = {_short(after.get(value))}"
        return f"{name}: {_short(before.get(value))} → {_short(after.get(value))}"
    if before and after:
        changed = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
        return "; ".join(f"{k}: {_short(before.get(k))} → {_short(after.get(k))}" for k in changed)
    if event.type.startswith("transition_request."):
        return f"#{after.get('id')} {after.get('from_stage', '')} → {after.get('target', '')}"
    return ""


def _timeline(
    request: HttpRequest, *, title: str, subtitle: str, events: Any, back: str
) -> HttpResponse:
    page = Paginator(events.order_by("-seq"), PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [(event, event_change(event)) for event in page.object_list]
    context = {
        **admin.site.each_context(request),
        "title": title,
        "subtitle": subtitle,
        "page_obj": page,
        "rows": rows,
        "back_url": back,
    }
    return render(request, "admin/registry/timeline.html", context)


@require_safe
def model_timeline(request: HttpRequest, pk: int) -> HttpResponse:
    actor = _actor(request)
    model = _readable(actor, pk)
    events = selectors.event_list(viewer=actor).filter(model_id=pk)
    name = model.name if model is not None else f"deleted model #{pk}"
    back = (
        reverse("admin:registry_registeredmodel_change", args=[pk])
        if model is not None
        else reverse("admin:registry_registeredmodel_changelist")
    )
    return _timeline(
        request,
        title=f"Timeline of {name}",
        subtitle="every event, newest first",
        events=events,
        back=back,
    )


@require_safe
def version_timeline(request: HttpRequest, pk: int) -> HttpResponse:
    actor = _actor(request)
    version = ModelVersion.objects.select_related("model").filter(pk=pk).first()
    if version is None:
        raise Http404("No such version.")
    _readable(actor, version.model_id)
    events = selectors.event_list(viewer=actor).filter(
        model_id=version.model_id, version=version.version
    )
    return _timeline(
        request,
        title=f"Timeline of {version.model.name} version {version.version}",
        subtitle="every event of this version, newest first",
        events=events,
        back=reverse("admin:registry_modelversion_change", args=[pk]),
    )


urlpatterns = [
    path(
        "admin/registry/registeredmodel/<int:pk>/timeline/",
        admin.site.admin_view(model_timeline),
        name="registry-model-timeline",
    ),
    path(
        "admin/registry/modelversion/<int:pk>/timeline/",
        admin.site.admin_view(version_timeline),
        name="registry-version-timeline",
    ),
]
