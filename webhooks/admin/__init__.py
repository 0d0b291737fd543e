"""Webhooks in the admin: subscriptions (with the secret shown once, rotation, test sends and
replays) and their deliveries with the attempts. Every change goes through webhooks.services
with the admin actor, so the history records it and the API's rules hold here too."""

from webhooks.admin.deliveries import AttemptInline, DeliveryAdmin
from webhooks.admin.subscriptions import SubscriptionAdmin, SubscriptionForm

__all__ = ["AttemptInline", "DeliveryAdmin", "SubscriptionAdmin", "SubscriptionForm"]
