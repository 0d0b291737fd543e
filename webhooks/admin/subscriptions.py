"""Subscriptions in the admin: added, changed, deleted, their secret rotated, a test event sent
and failures replayed, all through webhooks.services. Secrets are shown once, when made; header
values never."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from config.errors import DomainError
from registry.refusals import refusal_record
from webhooks import crypto, services
from webhooks.admin.common import WebhookAdminMixin
from webhooks.admin.forms import (
    ReplayForm,
    RotateForm,
    SendTestForm,
    SubscriptionForm,
    ToolForm,
)
from webhooks.choices import DeliveryState
from webhooks.models import ALL_EVENTS, Attempt, Delivery, Subscription

EXCERPT_CHARS = 200


def _when(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z") if moment else "-"


def secret_message(subscription: Subscription, secret: str, *, rotated: bool) -> str:
    what = "New secret" if rotated else "Secret"
    return (
        f"{what} of {subscription}: {secret} — copy it now, it will not be shown again. "
        "Receivers verify the webhook-signature header with it."
    )


def outcome_message(result: services.TestResult) -> tuple[int, str]:
    """The message level and text telling what the receiver made of a test event."""
    delivery, attempt = result.delivery, result.attempt
    sent = f"Test event {delivery.event_type} (webhook-id {delivery.uid})"
    if attempt is None:
        return messages.ERROR, f"{sent} was not sent: {delivery.last_error}"
    if attempt.status_code is None:
        return messages.ERROR, f"{sent} got no answer: {attempt.error}"
    excerpt = attempt.response_excerpt[:EXCERPT_CHARS]
    body = f"its response began: {excerpt}" if excerpt else "with an empty body"
    level = messages.SUCCESS if result.success else messages.ERROR
    return level, f"{sent}: the receiver answered {attempt.status_code}, {body}"


@admin.register(Subscription)
class SubscriptionAdmin(WebhookAdminMixin, admin.ModelAdmin):
    """A model's subscriptions are its CAN_MANAGE holders'; registry-wide ones superusers'."""

    form = SubscriptionForm
    list_display = [
        "title",
        "flavor",
        "scope",
        "events_text",
        "status_text",
        "failing_since",
        "owner",
        "created_at",
    ]
    list_filter = ["status", "flavor"]
    search_fields = ["url", "name", "model_name"]
    list_select_related = ["owner"]
    readonly_fields = [
        "flavor",
        "scope",
        "status_reason_text",
        "failing_since",
        "secret_state",
        "header_names",
        "owner",
        "created_at",
        "updated_at",
        "deliveries_link",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.reach(request).subscriptions(super().get_queryset(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._staff(request) and self.reach(request).any_model

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.manages(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.manages(request, obj)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            fields = ["name", "url", "events", "model", "description", "status"]
            return [(None, {"fields": [*fields, "headers_text", "verify_tls"]})]
        return [
            (None, {"fields": ["name", "url", "events", "scope", "flavor", "description"]}),
            ("Status", {"fields": ["status", "status_reason_text", "failing_since"]}),
            (
                "Requests",
                {
                    "fields": [
                        "secret_state",
                        "header_names",
                        "headers_text",
                        "clear_headers",
                        "verify_tls",
                    ]
                },
            ),
            ("Record", {"fields": ["owner", "created_at", "updated_at", "deliveries_link"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else self.readonly_fields

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.actor = self.actor(request)  # type: ignore[attr-defined]
        return form

    # --- columns and fields -----------------------------------------------------------------

    @admin.display(description="Subscription", ordering="name")
    def title(self, obj: Subscription) -> str:
        if obj.name:
            return format_html("{}<br><small>{}</small>", obj.name, obj.url)
        return obj.url

    @admin.display(description="Model", ordering="model_name")
    def scope(self, obj: Subscription) -> str:
        if obj.model_id is None:
            return "(registry-wide)"
        return obj.model_name or f"(model #{obj.model_id})"

    @admin.display(description="Events")
    def events_text(self, obj: Subscription) -> str:
        return "All events" if ALL_EVENTS in obj.events else ", ".join(obj.events)

    @admin.display(description="Status", ordering="status")
    def status_text(self, obj: Subscription) -> str:
        return f"{obj.status}: {obj.status_reason}" if obj.status_reason else obj.status

    @admin.display(description="Disabled by the registry because")
    def status_reason_text(self, obj: Subscription) -> str:
        return obj.status_reason or "-"

    @admin.display(description="Secret")
    def secret_state(self, obj: Subscription) -> str:
        if not obj.secret_encrypted:
            return "None: its deliveries are not signed."
        text = "Set (shown only when it was made; rotate it to get a new one)."
        until = obj.previous_secret_until
        if obj.previous_secret_encrypted and until is not None and until > timezone.now():
            text += f" The previous secret also signs until {_when(until)}."
        return text

    @admin.display(description="Extra headers now")
    def header_names(self, obj: Subscription) -> str:
        try:
            names = sorted(crypto.decrypt_headers(obj.headers_encrypted))
        except crypto.SecretUnreadable as exc:
            return str(exc)
        return ", ".join(names) if names else "None"

    @admin.display(description="Deliveries")
    def deliveries_link(self, obj: Subscription) -> str:
        counts = dict(obj.deliveries.values_list("state").annotate(n=Count("pk")).order_by("state"))
        summary = ", ".join(f"{counts[state]} {state}" for state in sorted(counts)) or "none yet"
        url = reverse("admin:webhooks_delivery_changelist") + f"?subscription={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, summary)

    # --- add, change, delete ------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Subscription, form: Any, change: bool) -> None:
        if change and not form.service_values():
            return  # nothing changed: no event
        saved = form.save_through_service()
        if change:
            return
        obj.pk = saved.subscription.pk
        if saved.secret:
            self.message_user(
                request,
                secret_message(saved.subscription, saved.secret, rotated=False),
                messages.WARNING,
            )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """No related objects: save_model did everything."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # clean() asked the service already; a refusal here is a race lost since. The admin's
        # transaction rolled it back: say so, no 500.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:
            return self._refused(request, exc)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except DomainError as exc:
            return self._refused(request, exc)

    def _refused(self, request: HttpRequest, exc: DomainError) -> HttpResponse:
        refusal_record(exc)  # a refusal the history keeps, if the service noted one
        self.error(request, exc.message)
        return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request: HttpRequest, obj: Subscription) -> None:
        services.subscription_delete(subscription=obj, actor=self.actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for subscription in queryset:
            try:
                services.subscription_delete(subscription=subscription, actor=self.actor(request))
            except DomainError as exc:
                self.error(request, f"{subscription}: {exc.message}")

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """A summary instead of Django's list of every delivery and attempt, which would be
        long and would ask for delete rights on the read-only delivery screens."""
        subscriptions = list(objs)
        listed: list[Any] = []
        for subscription in subscriptions:
            deliveries = subscription.deliveries.count()
            listed += [
                f"Subscription: {subscription}",
                [f"{deliveries} deliveries and their attempts"],
            ]
        counts = {
            "subscriptions": len(subscriptions),
            "deliveries": Delivery.objects.filter(subscription__in=subscriptions).count(),
            "attempts": Attempt.objects.filter(delivery__subscription__in=subscriptions).count(),
        }
        refused = {str(sub) for sub in subscriptions if not self.manages(request, sub)}
        return listed, counts, refused, []

    # --- rotate the secret, send a test, replay failures ----------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = dict(extra_context or {})
        extra["webhook_tools"] = [
            (slug, label, reverse(f"admin:webhooks_subscription_{slug}", args=[object_id]))
            for slug, (label, _, _) in self.tools().items()
        ]
        return super().change_view(request, object_id, form_url, extra)

    def tools(self) -> dict[str, tuple[str, type[ToolForm], Callable[..., None]]]:
        """slug → (label, the form it asks, what its POST does)."""
        return {
            "rotate": ("Rotate secret", RotateForm, self.rotate),
            "test": ("Send test event", SendTestForm, self.send_test),
            "replay": ("Replay failures", ReplayForm, self.replay),
        }

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path(
                f"<path:object_id>/{slug}/",
                view(self.tool_view),
                {"slug": slug},
                name=f"webhooks_subscription_{slug}",
            )
            for slug in self.tools()
        ] + super().get_urls()

    def tool_view(self, request: HttpRequest, object_id: str, slug: str) -> HttpResponse:
        """GET: the page explaining the action, changing nothing. POST (with CSRF): do it."""
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_change_permission(request, obj):
            return self._get_obj_does_not_exist_redirect(  # type: ignore[attr-defined]
                request, self.opts, object_id
            )
        label, form_class, act = self.tools()[slug]
        data = request.POST if request.method == "POST" else None
        form = form_class(data, subscription=obj)
        change_url = reverse("admin:webhooks_subscription_change", args=[obj.pk])
        if request.method == "POST" and form.is_valid():
            try:
                act(request, obj, **form.cleaned_data)
            except DomainError as exc:
                self.error(request, f"{label}: {exc.message}")
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{label}: {obj}",
            "opts": self.opts,
            "original": obj,
            "form": form,
            "slug": slug,
            "label": label,
            "change_url": change_url,
        }
        if slug == "rotate":
            context["overlap_hours"] = settings.MODELGATE_WEBHOOK_SECRET_OVERLAP_SECONDS / 3600
        if slug == "replay":
            context["failed_recently"] = self._failed_count(request, obj, form)
        return TemplateResponse(request, "admin/webhooks/subscription/tool.html", context)

    def rotate(self, request: HttpRequest, obj: Subscription) -> None:
        rotated = services.subscription_update(
            subscription=obj, actor=self.actor(request), secret=None
        )
        self.message_user(
            request,
            secret_message(rotated.subscription, rotated.secret, rotated=True),
            messages.WARNING,
        )

    def send_test(self, request: HttpRequest, obj: Subscription, event: str = "") -> None:
        result = services.subscription_test(
            subscription=obj, actor=self.actor(request), event_name=event or None
        )
        level, text = outcome_message(result)
        self.message_user(request, text, level)

    def replay(self, request: HttpRequest, obj: Subscription, since: datetime) -> None:
        actor = self.actor(request)
        failed = services.deliveries_failed_since(actor=actor, since=since, subscription=obj)
        when = _when(since)
        if not failed:
            self.message_user(
                request, f"No failed or cancelled deliveries since {when}: nothing was sent."
            )
            return
        count = services.deliveries_redeliver(
            deliveries=failed, actor=actor, comment=f"Replay of the failures since {when}."
        )
        self.message_user(
            request,
            f"Replaying {count} failed or cancelled deliveries since {when}.",
            messages.SUCCESS,
        )

    def _failed_count(self, request: HttpRequest, obj: Subscription, form: Any) -> int | None:
        since = form.fields["since"].initial
        if form.is_bound:
            since = form.cleaned_data.get("since") if form.is_valid() else None
        else:
            since = forms.DateTimeField().clean(since)
        if since is None:
            return None
        return obj.deliveries.filter(
            state__in=[DeliveryState.FAILED, DeliveryState.CANCELLED],
            is_test=False,
            created_at__gte=since,
        ).count()
