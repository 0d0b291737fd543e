"""Deliveries in the admin: read-only, with their attempts inline; redelivered by action."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from config.errors import DomainError
from webhooks import services
from webhooks.admin.common import WebhookAdminMixin
from webhooks.choices import DeliveryState
from webhooks.models import Attempt, Delivery, Subscription

ERROR_CHARS = 80
ATTEMPT_FIELDS = ("number", "started_at", "duration", "status_code", "error", "response_excerpt")
DELIVERY_FIELDS = (
    "webhook_id",
    "subscription_link",
    "event_type",
    "event_link",
    "is_test",
    "state",
    "attempts",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "created_at",
    "finished_at",
    "body_pretty",
)


class AttemptInline(WebhookAdminMixin, admin.TabularInline):
    """Every try at a delivery, read-only: what the receiver answered or why nothing came back."""

    model = Attempt
    extra = 0
    can_delete = False
    fields = ATTEMPT_FIELDS
    readonly_fields = ATTEMPT_FIELDS
    ordering = ["number"]

    @admin.display(description="Duration")
    def duration(self, obj: Attempt) -> str:
        return f"{obj.duration_ms} ms"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SubscriptionFilter(admin.SimpleListFilter):
    """One subscription's deliveries (the subscription page links here)."""

    title = "subscription"
    parameter_name = "subscription"

    def __init__(self, request: HttpRequest, params: Any, model: Any, model_admin: Any) -> None:
        self.model_admin = model_admin
        super().__init__(request, params, model, model_admin)

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        reach = model_admin.reach(request)
        return [
            (str(subscription.pk), str(subscription))
            for subscription in reach.subscriptions(Subscription.objects.order_by("name", "url"))
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() is None:
            return queryset
        try:
            return queryset.filter(subscription_id=uuid.UUID(self.value()))
        except ValueError:
            return queryset.none()


@admin.register(Delivery)
class DeliveryAdmin(WebhookAdminMixin, admin.ModelAdmin):
    """What was sent to whom and how it went; nothing here is edited by hand."""

    list_display = [
        "delivery",
        "subscription_link",
        "event_type",
        "state",
        "attempts",
        "last_status_code",
        "last_error_excerpt",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["state", "subscription__flavor", "is_test", SubscriptionFilter]
    search_fields = ["event_type", "subscription__url", "subscription__name"]
    search_help_text = "An event type, a subscription's URL or name, or a webhook-id."
    list_select_related = ["subscription"]
    show_full_result_count = False
    actions = ["redeliver_selected"]
    inlines = [AttemptInline]
    fields = DELIVERY_FIELDS
    readonly_fields = DELIVERY_FIELDS

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.reach(request).subscriptions(super().get_queryset(request), "subscription__")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        # A receiver logs the webhook-id: pasting it finds the delivery.
        try:
            uid = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(Q(uid=uid)), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting the subscription deletes its deliveries

    # --- columns and fields -----------------------------------------------------------------

    @admin.display(description="Delivery", ordering="pk")
    def delivery(self, obj: Delivery) -> str:
        return f"#{obj.pk}" + (" (test)" if obj.is_test else "")

    @admin.display(description="Subscription", ordering="subscription__name")
    def subscription_link(self, obj: Delivery) -> str:
        url = reverse("admin:webhooks_subscription_change", args=[obj.subscription_id])
        return format_html('<a href="{}">{}</a>', url, obj.subscription)

    @admin.display(description="Last error")
    def last_error_excerpt(self, obj: Delivery) -> str:
        error = obj.last_error
        return error if len(error) <= ERROR_CHARS else error[: ERROR_CHARS - 1] + "…"

    @admin.display(description="webhook-id")
    def webhook_id(self, obj: Delivery) -> str:
        return str(obj.uid)

    @admin.display(description="History event")
    def event_link(self, obj: Delivery) -> str:
        if obj.event_id is None:
            return "None (a test delivery)"
        url = reverse("admin:registry_event_change", args=[obj.event_id])
        return format_html('<a href="{}">#{}</a>', url, obj.event_id)

    @admin.display(description="Body")
    def body_pretty(self, obj: Delivery) -> str:
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = obj.body
        return format_html('<pre class="webhook-body">{}</pre>', text)

    # --- redelivery ---------------------------------------------------------------------------

    @admin.action(description="Redeliver selected deliveries")
    def redeliver_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        if request.POST.get("select_across") != "1":
            ticked = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            queryset = self.get_queryset(request).filter(pk__in=ticked)
        deliveries = list(queryset.select_related("subscription").order_by("pk"))
        try:
            count = services.deliveries_redeliver(deliveries=deliveries, actor=self.actor(request))
        except DomainError as exc:
            self.error(request, f"Nothing was redelivered: {exc.message}")
            return
        text = f"Redelivering {count} deliveries with their webhook-id and body unchanged."
        left = [f"#{d.pk}" for d in deliveries if d.is_test or d.state == DeliveryState.PENDING]
        if left:
            text += f" Left as they are (still pending, or test deliveries): {', '.join(left)}."
        self.message_user(request, text, messages.SUCCESS if count else messages.WARNING)
