"""The state store: engine, hot statements, history, links, status, tables, batching, migrations."""
