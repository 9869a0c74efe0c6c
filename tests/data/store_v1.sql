-- A results store in the layout before schema versioning (schema version 1), as the SQLite-only ResultStore
-- wrote it: a bench run with inf / -inf written as Infinity tokens (NaN as null), a marked baseline, two devices.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, device TEXT, backend TEXT, torch TEXT, triton TEXT,
    commit_sha TEXT, dirty INTEGER, timestamp TEXT, host TEXT, status TEXT NOT NULL, baseline INTEGER DEFAULT 0
);
INSERT INTO runs VALUES('2026-01-01T00:00:00+00:00-139cb79c','bench','NVIDIA H100 80GB HBM3','cuda','2.11.0','3.6.0','0d57894',0,'2026-01-01T00:00:00+00:00','gpu-a','done',0);
INSERT INTO runs VALUES('2026-01-01T00:00:00+00:00-dc3fc350','bench','NVIDIA H100 80GB HBM3','cuda','2.11.0','3.6.0','0d57894',0,'2026-01-01T00:00:00+00:00','gpu-a','done',1);
INSERT INTO runs VALUES('2026-01-02T00:00:00+00:00-b6d8088f','baseline','NVIDIA H200','cuda','2.11.0','3.6.0','0d57894',0,'2026-01-02T00:00:00+00:00','gpu-a','done',0);
INSERT INTO runs VALUES('2026-01-03T00:00:00+00:00-9598ba3f','check','NVIDIA H200','cuda','2.11.0','3.6.0','0d57894',0,'2026-01-03T00:00:00+00:00','gpu-a','running',0);
CREATE TABLE rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL REFERENCES runs(run_id), data TEXT NOT NULL
);
INSERT INTO "rows" VALUES(1,'2026-01-01T00:00:00+00:00-139cb79c','{"op": "add", "impl": "generic", "case": "c0", "dtype": "bf16", "ms": 1.0, "ms_p20": 0.9, "ms_p80": 1.1, "error": ""}');
INSERT INTO "rows" VALUES(2,'2026-01-01T00:00:00+00:00-139cb79c','{"op": "exp", "impl": "generic", "case": "c0", "dtype": "bf16", "ms": Infinity, "ms_p20": -Infinity, "ms_p80": null, "error": "Infinity and NaN in a string"}');
INSERT INTO "rows" VALUES(3,'2026-01-01T00:00:00+00:00-dc3fc350','{"op": "add", "impl": "generic", "case": "c0", "dtype": "bf16", "ms": 1.2, "ms_p20": 1.1, "ms_p80": 1.3, "error": ""}');
INSERT INTO "rows" VALUES(4,'2026-01-02T00:00:00+00:00-b6d8088f','{"op": "add", "impl": "generic", "case": "c0", "dtype": "bf16", "ms": 0.8, "ms_p20": 0.7, "ms_p80": 0.9, "error": ""}');
INSERT INTO "rows" VALUES(5,'2026-01-03T00:00:00+00:00-9598ba3f','{"op": "add", "case": "c0", "dtype": "fp32", "passed": true, "rel_err": 0.0}');
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('rows',5);
CREATE INDEX rows_by_run ON rows(run_id);
COMMIT;
