"""The hot statements through the database driver itself (sqlite3, asyncpg).

SQLAlchemy Core stays for the schema and every cold path; the receiver's batched arrivals run
here, where building and executing statements through SQLAlchemy cost more CPU than the
database does (bench/RESULTS.md, issue 16). Each function decides with the same pure plan as
its SQLAlchemy twin (`arrivals.plan_arrivals`), so the two cannot drift apart in meaning.
"""
