"""What auditors rely on: signed checkpoints, chain verification, exports and point-in-time reads.

checkpoints.py  HMAC-signed (seq, hash, time) statements, written by a beat task
verify.py       recompute every hash and link, check the checkpoints: the first bad seq
export.py       the filtered history as JSON Lines or CSV, streamed, with a manifest
timeline.py     a model as it was at a moment, and every move of an alias
"""
