from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api import InputSerializer
from webhooks import crypto
from webhooks.choices import DeliveryState, SubscriptionStatus
from webhooks.models import Attempt, Delivery, Subscription


class SubscriptionOutSerializer(serializers.ModelSerializer):
    id = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()
    owner = serializers.SerializerMethodField()
    headers = serializers.SerializerMethodField(
        help_text="Names of the extra headers sent (their values are never shown)."
    )

    class Meta:
        model = Subscription
        fields = [
            "id",
            "name",
            "description",
            "url",
            "events",
            "model",
            "flavor",
            "status",
            "status_reason",
            "failing_since",
            "headers",
            "verify_tls",
            "owner",
            "created_at",
            "updated_at",
        ]

    def get_id(self, subscription: Subscription) -> str:
        return subscription.id.hex

    def get_model(self, subscription: Subscription) -> str | None:
        return subscription.model_name or None

    def get_owner(self, subscription: Subscription) -> str | None:
        return subscription.owner.get_username() if subscription.owner else None

    def get_headers(self, subscription: Subscription) -> list[str]:
        return sorted(crypto.decrypt_headers(subscription.headers_encrypted))


class SubscriptionWithSecretSerializer(SubscriptionOutSerializer):
    secret = serializers.SerializerMethodField(
        help_text="The signing secret; shown only in this response."
    )

    class Meta(SubscriptionOutSerializer.Meta):
        fields = [*SubscriptionOutSerializer.Meta.fields, "secret"]

    def get_secret(self, subscription: Subscription) -> str:
        return self.context["secret"]


@extend_schema_field(
    {
        "oneOf": [
            {"type": "array", "items": {"type": "string"}, "minItems": 1},
            {"type": "string", "enum": ["*"]},
        ]
    }
)
class _Events(serializers.Field):
    """A list of event types, or "*" for every event."""

    def to_internal_value(self, data: Any) -> list[str]:
        if data == "*":
            return ["*"]
        if not isinstance(data, list):
            raise serializers.ValidationError('Expected a list of event types, or "*".')
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class _SubscriptionFields(InputSerializer):
    url = serializers.CharField(max_length=2048, required=False)
    events = _Events(required=False, help_text='A list of event types, or "*" for all.')
    name = serializers.CharField(max_length=256, required=False, allow_blank=True)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    status = serializers.ChoiceField(choices=SubscriptionStatus.choices, required=False)
    headers = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False, allow_empty=True
    )
    verify_tls = serializers.BooleanField(required=False)


class SubscriptionCreateInSerializer(_SubscriptionFields):
    url = serializers.CharField(max_length=2048)
    model = serializers.CharField(
        required=False, allow_null=True, help_text="A model name; omitted or null: registry-wide."
    )
    secret = serializers.CharField(
        required=False, help_text="whsec_…; generated when omitted (and shown once)."
    )


class SubscriptionUpdateInSerializer(_SubscriptionFields):
    rotate_secret = serializers.BooleanField(
        required=False,
        help_text="Generate a new secret (shown once); the old one keeps signing for a while.",
    )
    secret = serializers.CharField(
        required=False, help_text="Rotate to this secret instead of a generated one."
    )


class SubscriptionTestInSerializer(InputSerializer):
    event = serializers.CharField(required=False, help_text="Defaults to the first event.")


class TestOutSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    status_code = serializers.IntegerField(allow_null=True)
    body = serializers.CharField(help_text="The first kilobyte of the receiver's answer.")
    error = serializers.CharField()
    duration_ms = serializers.IntegerField()
    delivery = serializers.IntegerField()


class AttemptOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = Attempt
        fields = [
            "number",
            "started_at",
            "duration_ms",
            "status_code",
            "error",
            "response_excerpt",
        ]


class DeliveryOutSerializer(serializers.ModelSerializer):
    webhook = serializers.SerializerMethodField()
    webhook_id = serializers.CharField(source="uid", help_text="The webhook-id header value.")
    event = serializers.IntegerField(source="event_id", allow_null=True)
    attempts = AttemptOutSerializer(source="attempt_set", many=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "webhook_id",
            "webhook",
            "event",
            "event_type",
            "is_test",
            "state",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "finished_at",
            "attempts",
        ]

    def get_webhook(self, delivery: Delivery) -> str:
        return delivery.subscription_id.hex


class DeliveryListQuerySerializer(InputSerializer):
    state = serializers.ChoiceField(choices=DeliveryState.choices, required=False)


class ReplayInSerializer(InputSerializer):
    since = serializers.DateTimeField(help_text="Failed deliveries made at or after this time.")
    webhook = serializers.CharField(required=False, help_text="Only this webhook's deliveries.")


class ReplayOutSerializer(serializers.Serializer):
    redelivered = serializers.IntegerField()
