"""Entities, validation rules and typed errors. No I/O lives here."""
