"""Production settings: the deployment checks, secrets from files, HTTPS, JSON logs carrying
request ids, and static files served by the web process (WhiteNoise)."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import django
import drf_spectacular_sidecar
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from config.env import env_secret, env_secret_list
from config.logs import RequestIdFilter, json_formatter, request_id_var

ROOT = Path(__file__).resolve().parent.parent
# Long and varied enough for Django's security.W009.
STRONG_KEY = "mg-deploy-test-4f9c2a7e1b8d6c3f0a5e9b2d7c4a1f8e6b3d0c9a2f5e8b1d4c7a0f3e6b9d2c5a8"
PRODUCTION = {"DEBUG": "0", "SECRET_KEY": STRONG_KEY, "ALLOWED_HOSTS": "registry.example.com"}
ADMIN_CSS = Path(django.__file__).parent / "contrib/admin/static/admin/css/base.css"
SWAGGER_JS = (
    Path(drf_spectacular_sidecar.__file__).parent / "static/drf_spectacular_sidecar/"
    "swagger-ui-dist/swagger-ui-bundle.js"
)


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """manage.py in a fresh process: the embedded default plus `env`, nothing else inherited
    that would change the settings under test."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODELGATE_", "DJANGO_"))
        and k.removesuffix("_FILE")
        not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "LOG_LEVEL"}
    }
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**inherited, "MODELGATE_VAR_DIR": str(tmp_path / "var"), **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


SHOW_SETTINGS = """
import json
from django.conf import settings as s
print(json.dumps({
    "SECRET_KEY": s.SECRET_KEY,
    "DATABASE": s.DATABASES["default"]["NAME"],
    "MODELGATE_HTTPS": s.MODELGATE_HTTPS,
    "SECURE_SSL_REDIRECT": s.SECURE_SSL_REDIRECT,
    "SESSION_COOKIE_SECURE": s.SESSION_COOKIE_SECURE,
    "CSRF_COOKIE_SECURE": s.CSRF_COOKIE_SECURE,
    "SECURE_HSTS_SECONDS": s.SECURE_HSTS_SECONDS,
    "SECURE_PROXY_SSL_HEADER": getattr(s, "SECURE_PROXY_SSL_HEADER", None),
    "MODELGATE_LOG_FORMAT": s.MODELGATE_LOG_FORMAT,
    "MODELGATE_TOKEN_PEPPER": s.MODELGATE_TOKEN_PEPPER,
}))
"""


# --- manage.py check --deploy ---------------------------------------------------------------------


def test_check_deploy_passes_with_the_production_environment(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    # W001-W003 are Django's look for its middleware by path; config.checks runs what they guard.
    assert result.stdout.strip() == "System check identified no issues (3 silenced).", (
        result.stdout + result.stderr
    )
    assert "WARNING" not in result.stderr


def test_check_deploy_still_sees_what_the_middleware_subclasses_guard(tmp_path):
    result = manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        **PRODUCTION,
        MODELGATE_HSTS_SECONDS="0",
        MODELGATE_SSL_REDIRECT="0",
    )

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "(security.W004)" in output  # no HSTS
    assert "(security.W008)" in output  # no redirect to HTTPS
    assert "(security.W001)" not in output
    assert "(modelgate.W001)" not in output


# --- the settings a deployment gets ---------------------------------------------------------------


def test_production_settings_read_secrets_from_files(tmp_path):
    (tmp_path / "secret_key").write_text(f"  {STRONG_KEY}\n")
    (tmp_path / "database_url").write_text(f"sqlite:///{tmp_path}/from-file.sqlite3\n")
    (tmp_path / "pepper").write_text("pepper-from-a-file\n")

    result = manage(
        tmp_path,
        "shell",
        "-c",
        SHOW_SETTINGS,
        DEBUG="0",
        ALLOWED_HOSTS="registry.example.com",
        SECRET_KEY_FILE=str(tmp_path / "secret_key"),
        DATABASE_URL_FILE=str(tmp_path / "database_url"),
        MODELGATE_TOKEN_PEPPER_FILE=str(tmp_path / "pepper"),
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "SECRET_KEY": STRONG_KEY,
        "DATABASE": f"{tmp_path}/from-file.sqlite3",
        "MODELGATE_HTTPS": True,
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "MODELGATE_LOG_FORMAT": "text",
        "MODELGATE_TOKEN_PEPPER": "pepper-from-a-file",
    }
    assert not (tmp_path / "var" / "secret_key").exists()  # nothing generated


def test_the_embedded_default_serves_plain_http(tmp_path):
    result = manage(tmp_path, "shell", "-c", SHOW_SETTINGS)

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.splitlines()[-1])
    generated = (tmp_path / "var" / "secret_key").read_text()
    assert shown["SECRET_KEY"] == generated
    assert shown["DATABASE"] == str(tmp_path / "var" / "modelgate.sqlite3")
    assert shown["MODELGATE_HTTPS"] is False
    assert shown["SECURE_SSL_REDIRECT"] is False
    assert shown["SESSION_COOKIE_SECURE"] is False
    assert shown["CSRF_COOKIE_SECURE"] is False
    assert shown["SECURE_HSTS_SECONDS"] == 0
    assert shown["SECURE_PROXY_SSL_HEADER"] is None


def test_a_secret_set_twice_stops_start_up(tmp_path):
    (tmp_path / "secret_key").write_text(STRONG_KEY)

    result = manage(
        tmp_path,
        "check",
        SECRET_KEY=STRONG_KEY,
        SECRET_KEY_FILE=str(tmp_path / "secret_key"),
    )

    assert result.returncode == 1
    assert (
        "ImproperlyConfigured: Both SECRET_KEY and SECRET_KEY_FILE are set: set only one of them."
        in result.stderr
    )


# --- env_secret -----------------------------------------------------------------------------------


def test_env_secret_from_the_environment(monkeypatch):
    monkeypatch.setenv("MG_TEST_SECRET", "from-env")
    monkeypatch.delenv("MG_TEST_SECRET_FILE", raising=False)
    assert env_secret("MG_TEST_SECRET") == "from-env"


def test_env_secret_from_a_file_is_stripped(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("\n  from-file \n\n")
    monkeypatch.delenv("MG_TEST_SECRET", raising=False)
    monkeypatch.setenv("MG_TEST_SECRET_FILE", str(secret))
    assert env_secret("MG_TEST_SECRET") == "from-file"


def test_env_secret_unset_is_none(monkeypatch):
    monkeypatch.setenv("MG_TEST_SECRET", "")
    monkeypatch.delenv("MG_TEST_SECRET_FILE", raising=False)
    assert env_secret("MG_TEST_SECRET") is None
    assert env_secret_list("MG_TEST_SECRET") == []


def test_env_secret_refuses_both(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-file")
    monkeypatch.setenv("MG_TEST_SECRET", "from-env")
    monkeypatch.setenv("MG_TEST_SECRET_FILE", str(secret))
    with pytest.raises(ImproperlyConfigured) as refused:
        env_secret("MG_TEST_SECRET")
    assert str(refused.value) == (
        "Both MG_TEST_SECRET and MG_TEST_SECRET_FILE are set: set only one of them."
    )


def test_env_secret_names_a_missing_file(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere"
    monkeypatch.delenv("MG_TEST_SECRET", raising=False)
    monkeypatch.setenv("MG_TEST_SECRET_FILE", str(missing))
    with pytest.raises(ImproperlyConfigured) as refused:
        env_secret("MG_TEST_SECRET")
    assert str(refused.value) == (
        f"MG_TEST_SECRET_FILE names {missing}, which cannot be read: No such file or directory."
    )


def test_env_secret_refuses_an_empty_file(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    monkeypatch.delenv("MG_TEST_SECRET", raising=False)
    monkeypatch.setenv("MG_TEST_SECRET_FILE", str(empty))
    with pytest.raises(ImproperlyConfigured) as refused:
        env_secret("MG_TEST_SECRET")
    assert str(refused.value) == f"MG_TEST_SECRET_FILE names {empty}, which is empty."


def test_env_secret_list_from_a_file(monkeypatch, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("old-key-1, old-key-2,,\n")
    monkeypatch.delenv("MG_TEST_KEYS", raising=False)
    monkeypatch.setenv("MG_TEST_KEYS_FILE", str(keys))
    assert env_secret_list("MG_TEST_KEYS") == ["old-key-1", "old-key-2"]


@pytest.mark.django_db
def test_ensure_admin_takes_the_password_from_a_file(monkeypatch, tmp_path):
    password_file = tmp_path / "admin_password"
    password_file.write_text("admin-password-from-a-file\n")
    monkeypatch.delenv("MODELGATE_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("MODELGATE_ADMIN_PASSWORD_FILE", str(password_file))

    call_command("ensure_admin", stdout=io.StringIO())

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password("admin-password-from-a-file")


# --- HTTPS: the probes' paths stay on plain HTTP --------------------------------------------------


@pytest.mark.django_db
def test_ssl_redirect_spares_the_probes(settings):
    settings.SECURE_SSL_REDIRECT = True
    client = Client()

    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    redirected = client.get("/api/v1/models/?page=2")
    assert redirected.status_code == 301
    assert redirected["Location"] == "https://testserver/api/v1/models/?page=2"


@pytest.mark.django_db
def test_https_behind_the_proxy_gets_hsts_and_no_redirect(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    response = Client().get("/api/v1/models/", headers={"X-Forwarded-Proto": "https"})

    assert response.status_code == 401  # served, not redirected: it asks for credentials
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


# --- JSON logs with request ids -------------------------------------------------------------------

view_logger = logging.getLogger("modelgate.tests.deploy")


def logging_view(request: HttpRequest) -> HttpResponse:
    view_logger.warning("inside the view", extra={"model": "fraud"})
    return HttpResponse("ok")


urlpatterns = [path("log-something/", logging_view)]


@pytest.fixture
def json_lines():
    """What modelgate.tests.deploy logs, formatted as in production (MODELGATE_LOG_FORMAT=json)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    view_logger.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        view_logger.removeHandler(handler)


@pytest.mark.urls("tests.test_deploy_settings")
def test_a_log_line_carries_the_request_id(json_lines):
    response = Client().get("/log-something/", headers={"X-Request-ID": "req-wsgi-1"})

    assert response["X-Request-ID"] == "req-wsgi-1"
    [line] = json_lines()
    assert line["message"] == "inside the view"
    assert line["level"] == "WARNING"
    assert line["logger"] == "modelgate.tests.deploy"
    assert line["request_id"] == "req-wsgi-1"
    assert line["model"] == "fraud"
    assert line["timestamp"].endswith("+00:00")
    assert request_id_var.get() is None  # reset once the request is answered


@pytest.mark.urls("tests.test_deploy_settings")
@pytest.mark.anyio
async def test_a_log_line_carries_the_request_id_under_asgi(json_lines):
    response = await AsyncClient().get("/log-something/")

    [line] = json_lines()
    assert len(response["X-Request-ID"]) == 32  # generated
    assert line["request_id"] == response["X-Request-ID"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_outside_a_request_the_request_id_is_null(json_lines):
    view_logger.warning("from a task")
    [line] = json_lines()
    assert line["request_id"] is None


def test_json_log_format_end_to_end(tmp_path):
    """MODELGATE_LOG_FORMAT=json: the console handler writes JSON lines; django.request's
    warning about a 404 (logged after the middleware returned) has the request id too."""
    result = manage(
        tmp_path,
        "shell",
        "-c",
        "from django.test import Client; "
        "Client().get('/nowhere', headers={'X-Request-ID': 'req-json-1'})",
        MODELGATE_LOG_FORMAT="json",
    )

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    [not_found] = [line for line in lines if line["logger"] == "django.request"]
    assert not_found["message"] == "Not Found: /nowhere"
    assert not_found["level"] == "WARNING"
    assert not_found["request_id"] == "req-json-1"


# --- static files ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    with override_settings(STATIC_ROOT=root):
        call_command("collectstatic", interactive=False, verbosity=0)
    return root


@pytest.fixture
def static_root(settings, collected, db):  # db: closing a response closes old connections
    settings.STATIC_ROOT = collected
    return collected


def body(response) -> bytes:
    try:
        return b"".join(response.streaming_content)
    finally:
        response.close()


def test_whitenoise_serves_an_admin_stylesheet(static_root):
    response = Client().get("/static/admin/css/base.css")

    assert response.status_code == 200
    assert response["Content-Type"] == 'text/css; charset="utf-8"'
    assert body(response) == ADMIN_CSS.read_bytes()


def test_whitenoise_serves_it_gzipped(static_root):
    response = Client().get("/static/admin/css/base.css", headers={"Accept-Encoding": "gzip"})

    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert gzip.decompress(body(response)) == ADMIN_CSS.read_bytes()


@pytest.mark.anyio
async def test_whitenoise_serves_the_api_docs_assets_under_asgi(static_root):
    response = await AsyncClient().get(
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    )

    assert response.status_code == 200
    assert response.is_async  # read a block at a time off the event loop
    content = b"".join([block async for block in response.streaming_content])
    response.close()
    assert content == SWAGGER_JS.read_bytes()
    assert response["Content-Length"] == str(len(content))


def test_a_missing_static_file_is_404(static_root):
    assert Client().get("/static/admin/css/no-such.css").status_code == 404
