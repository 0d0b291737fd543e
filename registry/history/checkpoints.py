"""Signed checkpoints of the event chain.

A checkpoint states "the chain ended at seq N with hash H at time T", signed with HMAC-SHA256
under MODELGATE_CHECKPOINT_KEY, a key that is not stored in the database. Whoever can edit the
event table can recompute the (unkeyed) hash chain after an edit, or cut off its tail and move
the chain head back; neither matches a checkpoint they cannot re-sign. A beat task writes one
every few minutes when the log has grown; exports carry the latest one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from registry.events import event_timestamp
from registry.models import Event, EventChainHead, EventCheckpoint

logger = logging.getLogger(__name__)


def checkpoint_key_id(key: str) -> str:
    """A fingerprint naming a key without revealing it (stored beside each signature)."""
    return hashlib.sha256(f"modelgate-checkpoint-key-id:{key}".encode()).hexdigest()[:16]


def _keys() -> dict[str, str]:
    keys = [settings.MODELGATE_CHECKPOINT_KEY, *settings.MODELGATE_CHECKPOINT_KEY_FALLBACKS]
    return {checkpoint_key_id(key): key for key in keys}


def checkpoint_message(*, seq: int, hash: str, created_at: datetime | str) -> bytes:
    """The signed bytes: `modelgate-checkpoint/v1`, seq, hash and UTC time, one per line."""
    when = created_at if isinstance(created_at, str) else event_timestamp(created_at)
    return f"modelgate-checkpoint/v1\n{seq}\n{hash}\n{when}".encode()


def checkpoint_sign(*, seq: int, hash: str, created_at: datetime, key: str) -> str:
    message = checkpoint_message(seq=seq, hash=hash, created_at=created_at)
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def checkpoint_signature_valid(checkpoint: EventCheckpoint) -> bool:
    """True when a known key (current or fallback) made the checkpoint's signature."""
    key = _keys().get(checkpoint.key_id)
    if key is None:
        return False
    expected = checkpoint_sign(
        seq=checkpoint.seq, hash=checkpoint.hash, created_at=checkpoint.created_at, key=key
    )
    return hmac.compare_digest(expected, checkpoint.signature)


def checkpoint_latest(*, through: int | None = None) -> EventCheckpoint | None:
    """The newest checkpoint (at or before seq `through`, when given)."""
    qs = EventCheckpoint.objects.all()
    if through is not None:
        qs = qs.filter(seq__lte=through)
    return qs.order_by("-seq", "-pk").first()


def checkpoint_as_dict(checkpoint: EventCheckpoint | None) -> dict[str, object] | None:
    if checkpoint is None:
        return None
    return {
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "created_at": event_timestamp(checkpoint.created_at),
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
    }


@transaction.atomic
def checkpoint_create(*, force: bool = False) -> EventCheckpoint | None:
    """Sign the chain head; None when the log is empty or the newest checkpoint already names it.

    The head is signed only when the event at its seq carries the same hash: signing a head that
    disagrees with the table would launder whatever made them differ (verify_history names it).
    """
    head = EventChainHead.objects.filter(pk=1).values_list("seq", "hash").first()
    if head is None:  # the row is recreated by the next append; until then, the last event
        head = Event.objects.order_by("-seq").values_list("seq", "hash").first()
    if head is None or head[0] == 0:
        return None
    seq, head_hash = head
    latest = checkpoint_latest()
    if latest is not None and latest.seq >= seq and not force:
        return None
    stored = Event.objects.filter(seq=seq).values_list("hash", flat=True).first()
    if stored != head_hash:
        logger.error(
            "not signing a checkpoint: the chain head names seq %s with hash %s, the event "
            "table has %s; run verify_history",
            seq,
            head_hash,
            stored,
        )
        return None
    key = settings.MODELGATE_CHECKPOINT_KEY
    now = timezone.now()
    return EventCheckpoint.objects.create(
        seq=seq,
        hash=head_hash,
        created_at=now,
        key_id=checkpoint_key_id(key),
        signature=checkpoint_sign(seq=seq, hash=head_hash, created_at=now, key=key),
    )
