"""Databricks-compatible workflow routes under the MLflow prefixes (reference §3.1 and §3.2)."""
