from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import health, metrics
from registry import admin_history
from registry.mlflow.urls import fallback_patterns as mlflow_fallback
from registry.mlflow.urls import permission_patterns as databricks_permissions

admin.site.site_header = "Modelgate"
admin.site.site_title = "Modelgate"
admin.site.index_title = "Registry administration"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    *admin_history.urlpatterns,  # read-only timelines under /admin/registry/…/timeline/
    path("admin/", admin.site.urls),
    path("api/v1/", include("registry.api.urls")),
    path("api/v1/", include("accounts.api.urls")),
    path("api/v1/", include("workflows.api.urls")),
    path("api/v1/", include("webhooks.api.urls")),
    path("api/2.0/mlflow/", include("registry.mlflow.urls")),
    path("ajax-api/2.0/mlflow/", include("registry.mlflow.urls")),
    path("api/2.0/preview/mlflow/", include("registry.mlflow.urls")),
    # Databricks workflow routes (transition requests, comments) under the same three prefixes.
    path("api/2.0/mlflow/", include("workflows.mlflow.urls")),
    path("ajax-api/2.0/mlflow/", include("workflows.mlflow.urls")),
    path("api/2.0/preview/mlflow/", include("workflows.mlflow.urls")),
    # MLflow and Databricks webhook routes, under the same three prefixes.
    path("api/2.0/mlflow/", include("webhooks.mlflow.urls")),
    path("ajax-api/2.0/mlflow/", include("webhooks.mlflow.urls")),
    path("api/2.0/preview/mlflow/", include("webhooks.mlflow.urls")),
    path("api/2.0/permissions/", include(databricks_permissions)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # The admin's and API docs' assets under /static/ are served by config.staticfiles.
    # Keep last: whatever nothing above answered under the MLflow prefixes is ENDPOINT_NOT_FOUND.
    *mlflow_fallback,
]

# Under /api/ and /ajax-api/, what no view answered is JSON in the API's error shape too.
handler400 = "config.api.bad_request"
handler404 = "config.api.page_not_found"
handler500 = "config.api.server_error"
