"""Webhooks through the MLflow and Databricks REST APIs, on the same services as the native API.

- `oss`: MLflow's `/mlflow/webhooks` routes (reference §2.8); subscriptions made there have the
  `mlflow` flavor (MLflow's payload and `X-MLflow-*` headers).
- `databricks`: Databricks' `/mlflow/registry-webhooks/*` routes (reference §3.3); subscriptions
  made there have the `databricks` flavor (flat payload, `X-Databricks-Signature`).

Each route sees only the subscriptions of its own flavor: the others have events in another
vocabulary, which its wire format cannot express (their ids are RESOURCE_DOES_NOT_EXIST there).
The routes are included by config/urls.py under /api/2.0/mlflow/, /ajax-api/2.0/mlflow/ and
/api/2.0/preview/mlflow/, like the Databricks workflow routes (the registry never imports
webhooks).
"""
