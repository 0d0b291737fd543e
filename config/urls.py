from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve as static_serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import health
from registry import admin_history
from registry.mlflow.urls import fallback_patterns as mlflow_fallback
from registry.mlflow.urls import permission_patterns as databricks_permissions

admin.site.site_header = "Modelgate"
admin.site.site_title = "Modelgate"
admin.site.index_title = "Registry administration"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
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
    path("api/2.0/permissions/", include(databricks_permissions)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Admin and API-docs assets, collected at start-up. They are few and small; a proxy or CDN
    # in front may cache them (they are served with Last-Modified and honour If-Modified-Since).
    re_path(r"^static/(?P<path>.*)$", static_serve, {"document_root": settings.STATIC_ROOT}),
    # Keep last: whatever nothing above answered under the MLflow prefixes is ENDPOINT_NOT_FOUND.
    *mlflow_fallback,
]
