"""Django's deployment checks, made to see Modelgate's middleware.

Django finds its security, CSRF and clickjacking middleware by dotted path, and when a path is
missing it warns (security.W001-W003) and skips every check that depends on that middleware:
HSTS, the HTTPS redirect, nosniff, X-Frame-Options, the CSRF cookie. config.middleware lists
subclasses of those classes (their hooks run in the event loop under ASGI), so settings silence
W001-W003 and this check runs the skipped ones as if the paths of the extended classes were
listed, and warns itself when one of the three is really missing.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.checks.security import base, csrf
from django.middleware import clickjacking, security
from django.middleware import csrf as csrf_middleware
from django.utils.module_loading import import_string

CHECKED_MIDDLEWARE: tuple[type, ...] = (
    security.SecurityMiddleware,
    csrf_middleware.CsrfViewMiddleware,
    clickjacking.XFrameOptionsMiddleware,
)
DEPENDENT_CHECKS = (
    base.check_sts,
    base.check_sts_include_subdomains,
    base.check_sts_preload,
    base.check_content_type_nosniff,
    base.check_ssl_redirect,
    base.check_xframe_deny,
    base.check_referrer_policy,
    base.check_cross_origin_opener_policy,
    csrf.check_csrf_cookie_secure,
)


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _as_checked_path(path: str) -> str:
    cls = import_string(path)
    for checked in CHECKED_MIDDLEWARE:
        if isinstance(cls, type) and issubclass(cls, checked):
            return _path(checked)
    return path


@checks.register(checks.Tags.security, deploy=True)
def check_middleware_subclasses(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Django's middleware-dependent deployment checks, seeing subclasses as the classes."""
    from django.test.utils import override_settings

    middleware = [_as_checked_path(path) for path in settings.MIDDLEWARE]
    messages: list[checks.CheckMessage] = [
        checks.Warning(
            f"Neither {_path(cls)} nor a subclass of it is in MIDDLEWARE.",
            id="modelgate.W001",
        )
        for cls in CHECKED_MIDDLEWARE
        if _path(cls) not in middleware
    ]
    if middleware == list(settings.MIDDLEWARE):
        return messages  # Django's own checks saw the classes
    with override_settings(MIDDLEWARE=middleware):
        for check in DEPENDENT_CHECKS:
            messages.extend(check(app_configs))
    return messages
