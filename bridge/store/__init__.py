"""The state store: `deliveries.Store` and its parts (see that module), tables, migrations."""
