"""Native API of the approval workflow: policies, transition requests, comments, activity."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.actors import Actor
from config.api import query_flag, validated
from registry import selectors as registry_selectors
from registry.api.serializers import EventOutSerializer
from registry.models import ModelVersion, RegisteredModel
from registry.validation import parse_version_number
from workflows import policies, selectors, services
from workflows.api import serializers as s
from workflows.choices import RequestStatus
from workflows.models import TransitionRequest


def _actor(request: Request) -> Actor:
    return Actor.of_request(request)


def _version(request: Request, name: str, version: str) -> ModelVersion:
    actor = _actor(request)
    model = registry_selectors.model_get(actor=actor, name=name)
    return registry_selectors.version_get(
        actor=actor, model=model, version=parse_version_number(version)
    )


def wait_until_applied(request: TransitionRequest) -> TransitionRequest:
    """After the approval that reached the quorum, wait (bounded) for the apply task, so a
    client that approves and then reads the version sees it applied."""
    deadline = time.monotonic() + settings.MODELGATE_APPROVE_WAIT_SECONDS
    while request.status == RequestStatus.APPROVED and time.monotonic() < deadline:
        time.sleep(0.05)
        request.refresh_from_db(fields=["status", "status_reason", "applied_at", "updated_at"])
    return request


# --- policies -------------------------------------------------------------------------------


class PolicyListCreateApi(generics.ListAPIView):
    serializer_class = s.PolicyOutSerializer

    def get_queryset(self) -> Any:
        return selectors.policy_list(actor=_actor(self.request)).order_by("pk")

    @extend_schema(request=s.PolicyCreateInSerializer, responses={201: s.PolicyOutSerializer})
    def post(self, request: Request) -> Response:
        data = validated(s.PolicyCreateInSerializer, request.data)
        name = data.pop("model")
        model: RegisteredModel | None = None
        if name is not None:
            model = registry_selectors.model_get(actor=_actor(request), name=name)
        policy = policies.policy_create(actor=_actor(request), model=model, **data)
        return Response(s.PolicyOutSerializer(policy).data, status=status.HTTP_201_CREATED)


class PolicyDetailApi(APIView):
    @extend_schema(responses=s.PolicyOutSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(
            s.PolicyOutSerializer(selectors.policy_get(actor=_actor(request), pk=pk)).data
        )

    @extend_schema(request=s.PolicyUpdateInSerializer, responses=s.PolicyOutSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        data = validated(s.PolicyUpdateInSerializer, request.data)
        policy = selectors.policy_get(actor=_actor(request), pk=pk)
        policy = policies.policy_update(actor=_actor(request), policy=policy, **data)
        return Response(s.PolicyOutSerializer(policy).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        policy = selectors.policy_get(actor=_actor(request), pk=pk)
        policies.policy_delete(actor=_actor(request), policy=policy)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- transition requests --------------------------------------------------------------------


class RequestListCreateApi(generics.ListAPIView):
    serializer_class = s.RequestOutSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("model", str),
            OpenApiParameter("status", str, enum=[choice.value for choice in RequestStatus]),
            OpenApiParameter(
                "waiting_for_me", bool, description="Only requests you may decide now."
            ),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        actor = _actor(self.request)
        params = self.request.query_params
        model = None
        if name := params.get("model"):
            model = registry_selectors.model_get(actor=actor, name=name)
        if query_flag(self.request, "waiting_for_me"):
            return selectors.requests_waiting_for(actor=actor, model=model)
        wanted = params.get("status")
        if wanted is not None and wanted not in RequestStatus.values:
            raise ValidationError(
                {"status": [f"Expected one of {', '.join(RequestStatus.values)}."]}
            )
        return selectors.request_list(actor=actor, model=model, status=wanted)

    @extend_schema(request=s.RequestCreateInSerializer, responses={201: s.RequestOutSerializer})
    def post(self, request: Request) -> Response:
        data = validated(s.RequestCreateInSerializer, request.data)
        version = _version(request, data["model"], str(data["version"]))
        created = services.request_create(
            version=version, target=data["target"], actor=_actor(request), comment=data["comment"]
        )
        body = s.RequestOutSerializer(selectors.request_get(actor=_actor(request), pk=created.pk))
        return Response(body.data, status=status.HTTP_201_CREATED)


class RequestDetailApi(APIView):
    @extend_schema(responses=s.RequestOutSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(
            s.RequestOutSerializer(selectors.request_get(actor=_actor(request), pk=pk)).data
        )


class _RequestDecisionApi(APIView):
    decide: Callable[..., TransitionRequest] = staticmethod(services.request_approve)

    @extend_schema(request=s.DecisionInSerializer, responses=s.RequestOutSerializer)
    def post(self, request: Request, pk: int) -> Response:
        data = validated(s.DecisionInSerializer, request.data)
        actor = _actor(request)
        found = selectors.request_get(actor=actor, pk=pk)
        decided = self.decide(request=found, actor=actor, comment=data["comment"])
        wait_until_applied(decided)
        return Response(s.RequestOutSerializer(selectors.request_get(actor=actor, pk=pk)).data)


class RequestApproveApi(_RequestDecisionApi):
    """Approve; when this reaches the quorum the request is applied (waited for, bounded)."""

    decide = staticmethod(services.request_approve)


class RequestRejectApi(_RequestDecisionApi):
    decide = staticmethod(services.request_reject)


class RequestCancelApi(_RequestDecisionApi):
    decide = staticmethod(services.request_cancel)


# --- comments and activity ------------------------------------------------------------------


class VersionCommentListCreateApi(generics.ListAPIView):
    serializer_class = s.CommentOutSerializer

    def get_queryset(self) -> Any:
        version = _version(self.request, self.kwargs["name"], self.kwargs["version"])
        return selectors.comment_list(version=version).select_related("version__model")

    @extend_schema(request=s.CommentInSerializer, responses={201: s.CommentOutSerializer})
    def post(self, request: Request, name: str, version: str) -> Response:
        data = validated(s.CommentInSerializer, request.data)
        comment = services.comment_create(
            version=_version(request, name, version), actor=_actor(request), text=data["text"]
        )
        return Response(s.CommentOutSerializer(comment).data, status=status.HTTP_201_CREATED)


class CommentDetailApi(APIView):
    @extend_schema(request=s.CommentInSerializer, responses=s.CommentOutSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        data = validated(s.CommentInSerializer, request.data)
        comment = selectors.comment_get(actor=_actor(request), pk=pk)
        comment = services.comment_update(comment=comment, actor=_actor(request), text=data["text"])
        return Response(s.CommentOutSerializer(comment).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        comment = selectors.comment_get(actor=_actor(request), pk=pk)
        services.comment_delete(comment=comment, actor=_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionActivityApi(generics.ListAPIView):
    """Everything that happened to a version: registry changes, requests, reviews, comments."""

    serializer_class = EventOutSerializer

    def get_queryset(self) -> Any:
        version = _version(self.request, self.kwargs["name"], self.kwargs["version"])
        return registry_selectors.event_list(
            viewer=_actor(self.request), model=version.model.name, version=version.version
        )
