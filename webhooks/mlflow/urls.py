"""MLflow and Databricks webhook routes, included by config/urls.py under /api/2.0/mlflow/,
/ajax-api/2.0/mlflow/ and /api/2.0/preview/mlflow/, before the ENDPOINT_NOT_FOUND fallback."""

from django.urls import path

from webhooks.mlflow import databricks, oss

urlpatterns = [
    # MLflow
    path("webhooks", oss.WebhookCreateListApi.as_view()),
    path("webhooks/<str:webhook_id>", oss.WebhookDetailApi.as_view()),
    path("webhooks/<str:webhook_id>/test", oss.WebhookTestApi.as_view()),
    # Databricks
    path("registry-webhooks/create", databricks.RegistryWebhookCreateApi.as_view()),
    path("registry-webhooks/list", databricks.RegistryWebhookListApi.as_view()),
    path("registry-webhooks/update", databricks.RegistryWebhookUpdateApi.as_view()),
    path("registry-webhooks/delete", databricks.RegistryWebhookDeleteApi.as_view()),
    path("registry-webhooks/test", databricks.RegistryWebhookTestApi.as_view()),
]
