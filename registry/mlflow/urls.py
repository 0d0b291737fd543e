"""MLflow registry routes, included under /api/2.0/mlflow/, /ajax-api/2.0/mlflow/ and
/api/2.0/preview/mlflow/. Anything else under those prefixes is ENDPOINT_NOT_FOUND (see
`fallback_patterns`, included last by config/urls.py so other apps' MLflow-prefixed routes, such
as the Databricks extensions, can be included before it)."""

from django.urls import path, re_path

from registry.mlflow import databricks, views
from registry.mlflow.http import endpoint_not_found

urlpatterns = [
    path("registered-models/create", views.RegisteredModelCreateApi.as_view()),
    path("registered-models/get", views.RegisteredModelGetApi.as_view()),
    path("registered-models/update", views.RegisteredModelUpdateApi.as_view()),
    path("registered-models/rename", views.RegisteredModelRenameApi.as_view()),
    path("registered-models/delete", views.RegisteredModelDeleteApi.as_view()),
    path("registered-models/search", views.RegisteredModelSearchApi.as_view()),
    path("registered-models/list", views.RegisteredModelListApi.as_view()),
    path("registered-models/get-latest-versions", views.LatestVersionsApi.as_view()),
    path("registered-models/set-tag", views.RegisteredModelSetTagApi.as_view()),
    path("registered-models/delete-tag", views.RegisteredModelDeleteTagApi.as_view()),
    path("registered-models/alias", views.RegisteredModelAliasApi.as_view()),
    path("model-versions/create", views.ModelVersionCreateApi.as_view()),
    path("model-versions/get", views.ModelVersionGetApi.as_view()),
    path("model-versions/update", views.ModelVersionUpdateApi.as_view()),
    path("model-versions/transition-stage", views.ModelVersionTransitionStageApi.as_view()),
    path("model-versions/delete", views.ModelVersionDeleteApi.as_view()),
    path("model-versions/search", views.ModelVersionSearchApi.as_view()),
    path("model-versions/get-download-uri", views.ModelVersionDownloadUriApi.as_view()),
    path("model-versions/set-tag", views.ModelVersionSetTagApi.as_view()),
    path("model-versions/delete-tag", views.ModelVersionDeleteTagApi.as_view()),
    # Databricks extensions
    path("databricks/registered-models/get", databricks.DatabricksModelGetApi.as_view()),
]

# Databricks permissions API, under /api/2.0/permissions/.
permission_patterns = [
    path(
        "registered-models/<str:model_id>/permissionLevels",
        databricks.DatabricksPermissionLevelsApi.as_view(),
    ),
    path("registered-models/<str:model_id>", databricks.DatabricksModelPermissionsApi.as_view()),
]

# Every path under the MLflow prefixes that nothing else answered.
fallback_patterns = [
    re_path(r"^(?:api|ajax-api)/2\.0/(?:preview/)?mlflow/", endpoint_not_found),
]
