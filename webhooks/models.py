"""Subscriptions, and the deliveries and attempts that carry events to them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from webhooks.choices import DeliveryState, Flavor, SubscriptionStatus

ALL_EVENTS = "*"


class Subscription(models.Model):
    """A receiver URL and the events it wants, registry-wide or for one model.

    The model is kept as a plain id (not a foreign key) so a subscription outlives its model's
    deletion long enough to hear about it, and follows renames.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    flavor = models.CharField(max_length=16, choices=Flavor.choices, default=Flavor.NATIVE)
    name = models.CharField(max_length=256, blank=True, default="")
    description = models.TextField(blank=True, default="")
    url = models.CharField(max_length=2048)
    # Event names in the flavor's own vocabulary; ALL_EVENTS alone means every event.
    events = models.JSONField(default=list)
    model_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    model_name = models.CharField(max_length=256, blank=True, default="")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="webhook_subscriptions",
    )
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    # Why the registry disabled it (410 Gone, failing for days); empty when a person did.
    status_reason = models.TextField(blank=True, default="")
    # Start of the current run of failed attempts; cleared by a success.
    failing_since = models.DateTimeField(null=True, blank=True)
    # Encrypted at rest (webhooks/crypto.py); empty when the subscription signs nothing.
    secret_encrypted = models.TextField(blank=True, default="")
    # The secret before the last rotation, still signed with until `previous_secret_until`.
    previous_secret_encrypted = models.TextField(blank=True, default="")
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    # Extra request headers (e.g. Authorization), encrypted JSON.
    headers_encrypted = models.TextField(blank=True, default="")
    verify_tls = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["status", "model_id"], name="webhooks_sub_status_model")]

    def __str__(self) -> str:
        return self.name or self.url

    @property
    def all_events(self) -> bool:
        return ALL_EVENTS in self.events


class Delivery(models.Model):
    """One event on its way to one subscription; its `uid` is the receiver's de-duplication key."""

    uid = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    # Null for test deliveries, which carry a made-up event. No database constraint: events are
    # never deleted, and the append-only history tables stay free of references from elsewhere.
    event = models.ForeignKey(
        "registry.Event",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    # The event's name in the subscription's vocabulary, as the payload states it.
    event_type = models.CharField(max_length=64)
    # The exact bytes sent (and signed) on every attempt.
    body = models.TextField()
    is_test = models.BooleanField(default=False)
    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    # Attempts made before the last manual redelivery: the retry schedule starts again there.
    retries_from = models.PositiveIntegerField(default=0)
    # When the next attempt is due; null once the delivery is finished.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker sending it holds it until then; past it, the sweeper may hand it out again.
    lease_until = models.DateTimeField(null=True, blank=True)
    # When it was last handed to the broker; the sweeper re-sends messages the broker lost.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "subscription"], name="webhooks_delivery_once_per_event"
            )
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="webhooks_delivery_due"),
            models.Index(fields=["subscription", "-id"], name="webhooks_delivery_sub"),
        ]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.event_type} → {self.subscription_id} ({self.state})"


class Attempt(models.Model):
    """One try at sending a delivery: what the receiver answered, or why nothing came back."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # The first kilobyte of the response body.
    response_excerpt = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhooks_attempt_number")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
