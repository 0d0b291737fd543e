#!/usr/bin/env python3
"""Check a Modelgate history export (JSON Lines) offline, with nothing but Python 3.

    python3 verify_export.py EXPORT.jsonl [--key CHECKPOINT_KEY]

For every row it recomputes the hash from the row's fields (the canonical form below); where
two rows have consecutive sequence numbers it checks that the second links to the first
(`prev_hash`); then it checks the trailing manifest: the row count, the first and last seq, the
head hash and the checkpoint hash when the export holds those rows, and with --key (the
server's MODELGATE_CHECKPOINT_KEY) the checkpoint's signature. A filtered export holds only
some seqs: links are checked across the contiguous runs only, and each row's own hash always.

Exit status 0 when everything that can be checked holds; 1 with the first problem otherwise.
See docs/auditing.md.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys

GENESIS = "0" * 64


def canonical(row: dict) -> bytes:
    """The bytes an event's hash covers: sorted-key compact JSON of its recorded fields."""
    body = {
        "seq": row["seq"],
        "type": row["type"],
        "created_at": row["time"],
        "actor": {
            "id": row["actor_id"],
            "name": row["actor"],
            "token": row["token"],
            "source": row["source"],
            "client_ip": row["client_ip"],
        },
        "request_id": row["request_id"],
        "model": {"id": row["model_id"], "name": row["model"]},
        "version": row["version"],
        "before": row["before"],
        "after": row["after"],
        "comment": row["comment"],
        "prev_hash": row["prev_hash"],
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def checkpoint_signature(checkpoint: dict, key: str) -> str:
    message = "modelgate-checkpoint/v1\n{seq}\n{hash}\n{created_at}".format(**checkpoint)
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def read_manifest(path: str) -> dict | None:
    """The manifest: the last line of the file, read from the end (the file may be large)."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - (1 << 20)))
        tail = handle.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    record = json.loads(tail)
    return record.get("_manifest") if isinstance(record, dict) else None


def verify(path: str, key: str | None = None) -> tuple[bool, str]:
    """(ok, what was found) for an export file."""
    manifest = read_manifest(path)
    if manifest is None:
        return False, "no manifest line at the end: the export is cut short"
    head, checkpoint = manifest["head"], manifest.get("checkpoint")
    wanted = {head["seq"]} | ({checkpoint["seq"]} if checkpoint else set())
    hashes: dict[int, str] = {}
    rows, first, last, previous = 0, None, None, None
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if "_manifest" in record:
                break
            seq = record["seq"]
            if hashlib.sha256(canonical(record)).hexdigest() != record["hash"]:
                return False, f"seq {seq}: edited (its fields do not match its hash)"
            if previous is not None:
                if seq <= previous["seq"]:
                    return False, f"seq {seq}: out of order after seq {previous['seq']}"
                if seq == previous["seq"] + 1 and record["prev_hash"] != previous["hash"]:
                    return False, f"seq {seq}: does not link to seq {previous['seq']}"
            if seq == 1 and record["prev_hash"] != GENESIS:
                return False, "seq 1: does not start the chain"
            rows, last = rows + 1, seq
            first = seq if first is None else first
            if seq in wanted:
                hashes[seq] = record["hash"]
            previous = record
        else:
            return False, "no manifest line: the export is cut short"
        if next(lines, "").strip():
            return False, "a row after the manifest"
    if (manifest["rows"], manifest["first_seq"], manifest["last_seq"]) != (rows, first, last):
        return False, (
            f"the manifest says {manifest['rows']} rows, seq {manifest['first_seq']}.."
            f"{manifest['last_seq']}; the file holds {rows}, seq {first}..{last}"
        )
    notes = [f"{rows} rows, seq {first}..{last}, every hash recomputed"]
    if head["seq"] in hashes:
        if hashes[head["seq"]] != head["hash"]:
            return False, f"seq {head['seq']}: its hash is not the head hash in the manifest"
        notes.append(f"holds the head (seq {head['seq']})")
    if checkpoint:
        if checkpoint["seq"] in hashes and hashes[checkpoint["seq"]] != checkpoint["hash"]:
            return False, f"seq {checkpoint['seq']}: its hash is not the checkpoint's"
        if key is None:
            notes.append("checkpoint signature not checked (no --key)")
        elif hmac.compare_digest(checkpoint_signature(checkpoint, key), checkpoint["signature"]):
            notes.append(f"checkpoint of seq {checkpoint['seq']}: signature verified")
        else:
            return False, "the checkpoint's signature does not verify with this key"
    return True, "; ".join(notes)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Check a Modelgate JSON Lines history export.")
    parser.add_argument("export", help="the .jsonl file")
    parser.add_argument("--key", help="MODELGATE_CHECKPOINT_KEY, to check the signature")
    args = parser.parse_args(argv)
    ok, message = verify(args.export, key=args.key)
    print(("OK: " if ok else "FAILED: ") + message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
