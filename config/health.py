"""Liveness and readiness, without authentication."""

import asyncio

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse


async def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving."""
    return JsonResponse({"status": "ok"})


def _database_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return False, type(exc).__name__
    finally:
        connection.close()
    return True, ""


def _broker_ok() -> tuple[bool, str]:
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return False, type(exc).__name__
    return True, ""


async def readyz(request: HttpRequest) -> JsonResponse:
    """The database and the broker answer; 503 naming what does not."""
    (db_ok, db_err), (broker_ok, broker_err) = await asyncio.gather(
        sync_to_async(_database_ok, thread_sensitive=False)(),
        sync_to_async(_broker_ok, thread_sensitive=False)(),
    )
    body = {
        "status": "ok" if db_ok and broker_ok else "unavailable",
        "database": "ok" if db_ok else f"error: {db_err}",
        "broker": "ok" if broker_ok else f"error: {broker_err}",
        "broker_transport": "redis" if settings.REDIS_URL else "filesystem",
    }
    return JsonResponse(body, status=200 if db_ok and broker_ok else 503)
