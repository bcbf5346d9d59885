"""The scores store: the published night's score rows, for the online `/lookup`.

A night is staged (its rows written under a new run id, invisible to readers), then published
in one statement that makes it the served run; `/lookup` serves the latest *published* run,
whatever its date, so a wrong night is undone by rolling back or deleting it (`vafa store`).
The last `KEEP_PUBLISHED` published runs are kept for that. Each run records the output
folder it was published with, and the store refuses a run of another folder unless told.

The row table holds the columns a database user filters on (as_of, churn probability, CLV,
value at risk, segment, action, model version) typed, and the whole score row as JSON, so
columns the scorer adds later need no migration. Written for SQLite (the default, in WAL mode
so the service reads while the batch writes) and PostgreSQL.

`database` holds `ScoreStore`, `tables` the schema, errors and run records, `rows` the
encoding of score rows.
"""
