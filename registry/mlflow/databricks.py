"""Databricks registry extensions for models and permissions (reference §3.1 and §3.4).

`databricks/registered-models/get` returns a model with its id and the caller's permission
level; `/api/2.0/permissions/registered-models/{id}` reads and changes its access-control list
(PUT replaces the direct grants, PATCH merges), and `…/permissionLevels` lists the levels.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request

from accounts.actors import Actor, Source
from config.errors import NotFound
from registry import selectors, services
from registry.acl import acl_parse
from registry.mlflow import reads
from registry.mlflow.http import MlflowApi, Params
from registry.mlflow.rendering import model_json
from registry.models import RegisteredModel
from registry.permissions import GRANTABLE, LEVEL_DESCRIPTIONS, Level, model_level


def _actor(request: Request) -> Actor:
    return Actor.of_request(request, Source.MLFLOW)


class DatabricksModelGetApi(MlflowApi):
    def get(self, request: Request, params: Params) -> dict[str, Any]:
        actor = _actor(request)
        model = selectors.model_get(actor=actor, name=params.required("name"))
        latest = reads.latest_versions([model.pk]).get(model.pk, [])
        body = model_json(model, latest)
        body["id"] = str(model.pk)
        if model.created_by is not None:
            body["user_id"] = model.created_by.get_username()
        body["permission_level"] = model_level(actor, model).name
        return {"registered_model_databricks": body}


def _model_by_id(request: Request, raw_id: str, level: Level) -> RegisteredModel:
    if not raw_id.isdigit():
        raise NotFound(f"Registered model with id {raw_id} not found")
    return selectors.model_get_by_id(actor=_actor(request), pk=int(raw_id), level=level)


def _permissions_body(model: RegisteredModel) -> dict[str, Any]:
    return {
        "object_id": f"/registered-models/{model.pk}",
        "object_type": "registered-model",
        "access_control_list": selectors.permissions_acl(model=model),
    }


class DatabricksModelPermissionsApi(MlflowApi):
    """GET, PUT (replace) and PATCH (merge) the ACL of a model; CAN_MANAGE required."""

    def get(self, request: Request, params: Params) -> dict[str, Any]:
        model = _model_by_id(request, self.kwargs["model_id"], Level.CAN_MANAGE)
        return _permissions_body(model)

    def put(self, request: Request, params: Params) -> dict[str, Any]:
        return self._update(request, params, replace=True)

    def patch(self, request: Request, params: Params) -> dict[str, Any]:
        return self._update(request, params, replace=False)

    def _update(self, request: Request, params: Params, *, replace: bool) -> dict[str, Any]:
        users, groups = acl_parse(params.raw("access_control_list") or [])
        model = _model_by_id(request, self.kwargs["model_id"], Level.CAN_MANAGE)
        services.permissions_update(
            model=model, actor=_actor(request), users=users, groups=groups, replace=replace
        )
        return _permissions_body(model)


class DatabricksPermissionLevelsApi(MlflowApi):
    def get(self, request: Request, params: Params) -> dict[str, Any]:
        _model_by_id(request, self.kwargs["model_id"], Level.CAN_READ)
        return {
            "permission_levels": [
                {"permission_level": level.name, "description": LEVEL_DESCRIPTIONS[level]}
                for level in GRANTABLE
            ]
        }
