"""Native API of webhooks: subscriptions, tests, deliveries with their attempts, redelivery."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.actors import Actor
from config.api import validated
from registry import selectors as registry_selectors
from registry.permissions import Level
from webhooks import selectors, services
from webhooks.api import serializers as s
from webhooks.choices import SubscriptionStatus


def _actor(request: Request) -> Actor:
    return Actor.of_request(request)


class WebhookListCreateApi(generics.ListAPIView):
    serializer_class = s.SubscriptionOutSerializer

    @extend_schema(parameters=[OpenApiParameter("model", str, description="Only this model's.")])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        actor = _actor(self.request)
        model = None
        if name := self.request.query_params.get("model"):
            model = registry_selectors.model_get(actor=actor, name=name)
        return selectors.subscription_list(actor=actor, model=model)

    @extend_schema(
        request=s.SubscriptionCreateInSerializer,
        responses={201: s.SubscriptionWithSecretSerializer},
    )
    def post(self, request: Request) -> Response:
        data = validated(s.SubscriptionCreateInSerializer, request.data)
        actor = _actor(request)
        model = None
        if name := data.pop("model", None):
            model = registry_selectors.model_get(actor=actor, name=name, level=Level.CAN_MANAGE)
        created = services.subscription_create(
            actor=actor,
            model=model,
            url=data.pop("url"),
            events=data.pop("events", ["*"]),
            status=data.pop("status", SubscriptionStatus.ACTIVE),
            **data,
        )
        body = s.SubscriptionWithSecretSerializer(
            created.subscription, context={"secret": created.secret}
        )
        return Response(body.data, status=status.HTTP_201_CREATED)


class _SubscriptionUpdatedSerializer(s.SubscriptionOutSerializer):
    """The schema of a PATCH answer: the secret only when it was rotated."""

    secret = serializers.CharField(required=False, help_text="The new secret, shown only once.")

    class Meta(s.SubscriptionOutSerializer.Meta):
        fields = [*s.SubscriptionOutSerializer.Meta.fields, "secret"]


class WebhookDetailApi(APIView):
    @extend_schema(responses=s.SubscriptionOutSerializer)
    def get(self, request: Request, pk: str) -> Response:
        found = selectors.subscription_get(actor=_actor(request), pk=pk)
        return Response(s.SubscriptionOutSerializer(found).data)

    @extend_schema(
        request=s.SubscriptionUpdateInSerializer,
        responses=_SubscriptionUpdatedSerializer,
        description="Changes what is given. `rotate_secret` or `secret` rotate the secret: the "
        "answer carries the new one (once), and deliveries are signed with both for a while.",
    )
    def patch(self, request: Request, pk: str) -> Response:
        data = validated(s.SubscriptionUpdateInSerializer, request.data)
        actor = _actor(request)
        found = selectors.subscription_get(actor=actor, pk=pk)
        rotate = data.pop("rotate_secret", False)
        if rotate and "secret" not in data:
            data["secret"] = None
        updated = services.subscription_update(subscription=found, actor=actor, **data)
        body: s.SubscriptionOutSerializer
        if "secret" in data:
            body = s.SubscriptionWithSecretSerializer(
                updated.subscription, context={"secret": updated.secret}
            )
        else:
            body = s.SubscriptionOutSerializer(updated.subscription)
        return Response(body.data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: str) -> Response:
        actor = _actor(request)
        found = selectors.subscription_get(actor=actor, pk=pk)
        services.subscription_delete(subscription=found, actor=actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookTestApi(APIView):
    @extend_schema(request=s.SubscriptionTestInSerializer, responses=s.TestOutSerializer)
    def post(self, request: Request, pk: str) -> Response:
        """Send a signed test event now and answer with what the receiver said."""
        data = validated(s.SubscriptionTestInSerializer, request.data)
        actor = _actor(request)
        found = selectors.subscription_get(actor=actor, pk=pk)
        result = services.subscription_test(
            subscription=found, actor=actor, event_name=data.get("event")
        )
        attempt = result.attempt
        return Response(
            {
                "success": result.success,
                "status_code": attempt.status_code if attempt else None,
                "body": attempt.response_excerpt if attempt else "",
                "error": result.delivery.last_error,
                "duration_ms": attempt.duration_ms if attempt else 0,
                "delivery": result.delivery.pk,
            }
        )


class WebhookDeliveryListApi(generics.ListAPIView):
    serializer_class = s.DeliveryOutSerializer

    @extend_schema(parameters=[s.DeliveryListQuerySerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        # The filters; the page parameters are the paginator's.
        paging = {"page", "page_size"}
        filters = {k: v for k, v in self.request.query_params.items() if k not in paging}
        query = validated(s.DeliveryListQuerySerializer, filters)
        found = selectors.subscription_get(actor=_actor(self.request), pk=self.kwargs["pk"])
        return selectors.delivery_list(subscription=found, state=query.get("state"))


class DeliveryDetailApi(APIView):
    @extend_schema(responses=s.DeliveryOutSerializer)
    def get(self, request: Request, pk: str) -> Response:
        found = selectors.delivery_get(actor=_actor(request), pk=pk)
        return Response(s.DeliveryOutSerializer(found).data)


class DeliveryRedeliverApi(APIView):
    @extend_schema(request=None, responses={202: s.DeliveryOutSerializer})
    def post(self, request: Request, pk: str) -> Response:
        """Send a finished delivery again, same webhook-id and body; the schedule restarts."""
        actor = _actor(request)
        found = selectors.delivery_get(actor=actor, pk=pk)
        services.deliveries_redeliver(deliveries=[found], actor=actor)
        found = selectors.delivery_get(actor=actor, pk=pk)
        return Response(s.DeliveryOutSerializer(found).data, status=status.HTTP_202_ACCEPTED)


class DeliveryReplayApi(APIView):
    @extend_schema(request=s.ReplayInSerializer, responses={202: s.ReplayOutSerializer})
    def post(self, request: Request) -> Response:
        """Send again everything that failed since a time, for the webhooks you manage."""
        data = validated(s.ReplayInSerializer, request.data)
        actor = _actor(request)
        subscription = None
        if data.get("webhook"):
            subscription = selectors.subscription_get(actor=actor, pk=data["webhook"])
        failed = services.deliveries_failed_since(
            actor=actor, since=data["since"], subscription=subscription
        )
        count = services.deliveries_redeliver(deliveries=failed, actor=actor)
        return Response({"redelivered": count}, status=status.HTTP_202_ACCEPTED)
