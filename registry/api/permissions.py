"""`/api/v1/models/{name}/permissions/`: read and change who may do what on a model."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.actors import Actor
from config.api import validated
from registry import selectors, services
from registry.acl import acl_parse
from registry.api.serializers import PermissionsInSerializer
from registry.models import RegisteredModel
from registry.permissions import Level

_ACL_OUT = inline_serializer(
    "ModelPermissions",
    {
        "model": serializers.CharField(),
        "object_id": serializers.CharField(),
        "access_control_list": serializers.ListField(child=serializers.DictField()),
    },
)


def acl_body(model: RegisteredModel) -> dict[str, Any]:
    return {
        "model": model.name,
        "object_id": f"/registered-models/{model.pk}",
        "access_control_list": selectors.permissions_acl(model=model),
    }


class ModelPermissionsApi(APIView):
    """GET the grants; PUT replaces the direct grants, PATCH merges. Needs CAN_MANAGE."""

    def _model(self, request: Request, name: str) -> RegisteredModel:
        return selectors.model_get(
            actor=Actor.of_request(request), name=name, level=Level.CAN_MANAGE
        )

    @extend_schema(responses=_ACL_OUT)
    def get(self, request: Request, name: str) -> Response:
        return Response(acl_body(self._model(request, name)))

    @extend_schema(request=PermissionsInSerializer, responses=_ACL_OUT)
    def put(self, request: Request, name: str) -> Response:
        return self._update(request, name, replace=True)

    @extend_schema(request=PermissionsInSerializer, responses=_ACL_OUT)
    def patch(self, request: Request, name: str) -> Response:
        return self._update(request, name, replace=False)

    def _update(self, request: Request, name: str, *, replace: bool) -> Response:
        data = validated(PermissionsInSerializer, request.data)
        users, groups = acl_parse(data["access_control_list"])
        model = self._model(request, name)
        services.permissions_update(
            model=model,
            actor=Actor.of_request(request),
            users=users,
            groups=groups,
            replace=replace,
        )
        return Response(acl_body(model))
