#!/usr/bin/env python3
"""The floor under `yishi bench reference`: raw SQLite, no engine.

Writes what one reference instance leaves in Yishi's database (one `instances` row and its
10 `events` rows, same schema: engine/migrations/0001_initial.sql, WAL, foreign keys) in one
transaction per instance, one after another, from Python's built-in sqlite3 module, and prints
instances per second for `synchronous=FULL` (Yishi's default) and `NORMAL`. No engine that keeps
this history durably, one instance at a time, can go faster on the same disk.

Usage: benches/sqlite-floor.py [N] [FULL|NORMAL]   (default 5000, both)
"""

import json
import os
import sqlite3
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
SCHEMA = open(os.path.join(ROOT, "engine", "engine", "migrations", "sqlite", "0001_initial.sql")).read()

# The events of one reference instance, as Yishi stores them.
EVENTS = [
    {"type": "started", "workflow": "bench/reference", "hash": "8ce28d1287bb94bff66808c1af5b241a50b8aaf9eb7bb88f55238ef2009eecb6", "data": {"n": 7}},
    {"type": "action", "action": "start", "step": "compute", "token": 0, "actor": {"id": "bench", "roles": []}, "payload": {}},
    {"type": "entered", "token": 1, "step": "compute"},
    {"type": "data_changed", "changes": {"amount": 7}},
    {"type": "left", "token": 1, "step": "compute", "outcome": "done"},
    {"type": "entered", "token": 2, "step": "route"},
    {"type": "left", "token": 2, "step": "route", "outcome": "low"},
    {"type": "entered", "token": 3, "step": "end_low"},
    {"type": "left", "token": 3, "step": "end_low", "outcome": "end"},
    {"type": "completed", "outcome": "low"},
]
STATE = '{"status":"completed","outcome":"low","tokens":[],"visits":{"compute":1,"end_low":1,"route":1},"next_token":4,"next_scope":1}'


def run(sync):
    with tempfile.TemporaryDirectory(dir=os.path.join(ROOT, "target")) as tmp:
        db = sqlite3.connect(os.path.join(tmp, "floor.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={sync}")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)
        db.execute("INSERT INTO definitions VALUES (1, 'bench/reference', 1, 'h', '{}', '{}', 0)")
        started = time.perf_counter()
        for i in range(1, N + 1):
            now = int(time.time() * 1000)
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO instances VALUES (?, 'bench', 'bench/reference', 1, 'completed', 'low', '[]', ?, ?, 1, 10, ?, ?)",
                (i, json.dumps({"n": i, "amount": i % 200}), STATE, now, now),
            )
            db.executemany(
                "INSERT INTO events VALUES (?, ?, ?, 1, ?, ?)",
                [(i, seq, now, e["type"], json.dumps(e, separators=(",", ":"))) for seq, e in enumerate(EVENTS, 1)],
            )
            db.execute("COMMIT")
        secs = time.perf_counter() - started
        db.close()
    return N / secs


os.makedirs(os.path.join(ROOT, "target"), exist_ok=True)
for sync in sys.argv[2:3] or ("FULL", "NORMAL"):
    print(f"sqlite_floor_{sync.lower()}_instances_per_second {run(sync):.2f} inst/s")
