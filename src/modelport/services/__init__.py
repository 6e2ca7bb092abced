"""Use cases: the one place where business logic lives. Faces call these; these call domain, store and backends."""
