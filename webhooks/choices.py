from django.db import models


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "ACTIVE", "Active"
    # Receives only what the test route sends, never real events.
    TEST_MODE = "TEST_MODE", "Test mode"
    DISABLED = "DISABLED", "Disabled"


class Flavor(models.TextChoices):
    """Which API made the subscription: it decides the payload shape and the extra headers."""

    NATIVE = "native", "Modelgate"
    MLFLOW = "mlflow", "MLflow"
    DATABRICKS = "databricks", "Databricks"


class DeliveryState(models.TextChoices):
    PENDING = "PENDING", "Pending"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    # Gave up: a non-retryable answer, or the retry schedule ran out.
    FAILED = "FAILED", "Failed"
    # Not sent because the subscription was disabled or deleted meanwhile.
    CANCELLED = "CANCELLED", "Cancelled"


class WebhookEvent(models.TextChoices):
    """History events about subscriptions themselves (never carrying secrets)."""

    CREATED = "webhook.created"
    UPDATED = "webhook.updated"
    DELETED = "webhook.deleted"
    # Failed deliveries sent again by hand (one delivery, or a replay since a time).
    REDELIVERED = "webhook.redelivered"
