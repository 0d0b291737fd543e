from __future__ import annotations

import json

import pytest
from standardwebhooks import Webhook

from accounts.actors import Actor
from registry.services.models import model_create
from webhooks.choices import DeliveryState
from webhooks.models import Delivery
from webhooks.services import subscription_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_model_creation_reaches_the_receiver_signed(receiver, admin_user):
    actor = Actor(user=admin_user, source="api", request_id="req-1", client_ip="10.0.0.1")
    created = subscription_create(actor=actor, url=receiver.url, events=["*"])
    model_create(name="fraud", actor=actor)
    got = receiver.wait_for(2)
    types = [json.loads(r.body)["type"] for r in got]
    assert "registered_model.created" in types
    hit = next(r for r in got if json.loads(r.body)["type"] == "registered_model.created")
    payload = Webhook(created.secret).verify(hit.body, hit.headers)
    assert payload["data"]["model"]["name"] == "fraud"
    assert payload["data"]["actor"]["name"] == admin_user.username
    delivery = Delivery.objects.get(uid=hit.headers["webhook-id"])
    assert delivery.state == DeliveryState.SUCCEEDED
    assert delivery.attempts == 1
