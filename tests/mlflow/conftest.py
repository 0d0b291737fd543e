"""Fixtures for the MLflow compatibility tests: a live server driven by the real mlflow client."""

from __future__ import annotations

import base64

import pytest
from django.test import Client

PASSWORD = "mlflow-password-1"


@pytest.fixture
def pipeline_user(django_user_model):
    return django_user_model.objects.create_user(username="pipeline", password=PASSWORD)


@pytest.fixture
def mlflow_env(monkeypatch, pipeline_user, live_server):
    """The environment an ML pipeline sets: server URI and Basic credentials; no slow retries."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", pipeline_user.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", live_server.url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", live_server.url)
    return live_server.url


@pytest.fixture
def client(mlflow_env):
    from mlflow import MlflowClient

    return MlflowClient(registry_uri=mlflow_env, tracking_uri=mlflow_env)


@pytest.fixture
def fluent(mlflow_env):
    """The fluent API with its registry URI set the way users do it, reset afterwards."""
    import mlflow

    mlflow.set_registry_uri(mlflow_env)
    yield mlflow
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


@pytest.fixture
def http(pipeline_user) -> Client:
    """A Django test client sending the pipeline user's Basic credentials."""
    token = base64.b64encode(f"{pipeline_user.username}:{PASSWORD}".encode()).decode()
    return Client(HTTP_AUTHORIZATION=f"Basic {token}")
