"""Factories that build registry objects through the services, so events are recorded too."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

from accounts.actors import Actor
from registry import services
from registry.models import ModelVersion, RegisteredModel


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "password-123")


def make_model(actor: Actor, name: str = "fraud-scorer", **kwargs: Any) -> RegisteredModel:
    return services.model_create(name=name, actor=actor, **kwargs)


def make_version(
    actor: Actor, model: RegisteredModel, source: str = "s3://models/fraud/1", **kwargs: Any
) -> ModelVersion:
    return services.version_create(model=model, source=source, actor=actor, **kwargs)
