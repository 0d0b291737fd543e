"""Databricks workflow routes, included by config/urls.py under /api/2.0/mlflow/,
/ajax-api/2.0/mlflow/ and /api/2.0/preview/mlflow/, before the ENDPOINT_NOT_FOUND fallback.

They live here, not in registry/mlflow/urls.py, because the registry never imports workflows.
"""

from django.urls import path

from workflows.mlflow import views

urlpatterns = [
    path("transition-requests/create", views.TransitionRequestCreateApi.as_view()),
    path("transition-requests/approve", views.TransitionRequestApproveApi.as_view()),
    path("transition-requests/reject", views.TransitionRequestRejectApi.as_view()),
    path("transition-requests/delete", views.TransitionRequestDeleteApi.as_view()),
    path("transition-requests/list", views.TransitionRequestListApi.as_view()),
    path("comments/create", views.CommentCreateApi.as_view()),
    path("comments/update", views.CommentUpdateApi.as_view()),
    path("comments/delete", views.CommentDeleteApi.as_view()),
    path(
        "databricks/model-versions/transition-stage",
        views.DatabricksTransitionStageApi.as_view(),
    ),
]
