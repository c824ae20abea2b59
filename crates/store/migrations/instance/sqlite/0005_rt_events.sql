-- Real-time events pushed to a Message Center instance (nms:rtEvent).
CREATE TABLE rt_events (
    event_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    email      TEXT,
    ctx        TEXT NOT NULL,
    status     TEXT NOT NULL,
    pushed_by  INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX rt_events_status ON rt_events(status);
