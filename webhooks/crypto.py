"""Webhook secrets: generated in the Standard Webhooks form and kept encrypted at rest.

The encryption key comes from MODELGATE_WEBHOOK_SECRET_KEY (derived from SECRET_KEY when unset);
keys listed in MODELGATE_WEBHOOK_SECRET_KEY_FALLBACKS still decrypt what they encrypted, so the
key can be rotated without losing the secrets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from config.errors import Conflict

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


class SecretUnreadable(Conflict):
    """A stored secret that no configured key decrypts (the key was changed without fallback).

    A 409 for whoever touches it: setting a new secret or new headers replaces what is stored.
    """


def secret_generate() -> str:
    """A new secret: `whsec_` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key a Standard Webhooks receiver derives from the secret.

    For a `whsec_` secret, the base64-decoded bytes after the prefix. A secret given in another
    form (the MLflow and Databricks routes take any string) is used as its UTF-8 bytes; its
    receivers configure their library with `whsec_` + base64 of those bytes.
    """
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except ValueError:
            pass
    return secret.encode()


def secret_is_valid(secret: str) -> bool:
    """A `whsec_` secret must decode to at least 24 bytes; other strings need 16 characters."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return len(base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)) >= 24
        except ValueError:
            return False
    return len(secret) >= 16


def _fernet_key(material: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest())


@cache
def _cipher(key: str, fallbacks: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_fernet_key(k)) for k in (key, *fallbacks)])


def _current_cipher() -> MultiFernet:
    return _cipher(
        settings.MODELGATE_WEBHOOK_SECRET_KEY,
        tuple(settings.MODELGATE_WEBHOOK_SECRET_KEY_FALLBACKS),
    )


def encrypt(value: str) -> str:
    return _current_cipher().encrypt(value.encode()).decode() if value else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _current_cipher().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A stored webhook secret or header cannot be decrypted with "
            "MODELGATE_WEBHOOK_SECRET_KEY or its fallbacks: put the old key in "
            "MODELGATE_WEBHOOK_SECRET_KEY_FALLBACKS, or set a new secret and headers."
        ) from exc


def encrypt_headers(headers: dict[str, str]) -> str:
    return encrypt(json.dumps(headers, sort_keys=True)) if headers else ""


def decrypt_headers(token: str) -> dict[str, str]:
    return json.loads(decrypt(token)) if token else {}
