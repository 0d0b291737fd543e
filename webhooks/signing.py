"""Signatures of outgoing deliveries, in each scheme receivers verify.

- Standard Webhooks (every delivery): `webhook-signature: v1,<base64 HMAC-SHA256 of
  "id.timestamp.body">`, one `v1,` entry per valid secret (two while a rotated secret overlaps).
- MLflow (subscriptions made through the MLflow routes): the same construction keyed with the
  raw secret, in `X-MLflow-Signature`.
- Databricks (subscriptions made through the Databricks routes): lowercase hex HMAC-SHA256 of
  the body, keyed with the raw secret, in `X-Databricks-Signature`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from webhooks.crypto import signing_key


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(_hmac(signing_key(secret), signed)).decode()


def mlflow_signature(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(_hmac(secret.encode(), signed)).decode()


def databricks_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
