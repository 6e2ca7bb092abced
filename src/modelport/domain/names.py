"""Naming rules shared by every face. Pipelines and models map onto DNS labels, as in Wallaroo."""

from __future__ import annotations

import re

from modelport.domain.errors import InvalidInput

_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_dns_name(value: object, *, field: str, what: str) -> str:
    """ASCII letters, digits and '-', 1..63 characters, starting and ending with a letter or digit."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if not value:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(value) > 63:
        raise InvalidInput(f"{what} name is {len(value)} characters long; at most 63 are allowed", field=field)
    if not _DNS_LABEL.fullmatch(value):
        raise InvalidInput(
            f"{what} name {value!r} is not DNS compliant: use ASCII letters, digits and '-' only "
            "('.' and '_' are not allowed), starting and ending with a letter or digit",
            field=field,
        )
    return value


def check_display_name(value: object, *, field: str, what: str, max_length: int = 255) -> str:
    """Free-form names (workspaces, tokens): printable, trimmed, bounded."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if not value.strip():
        raise InvalidInput(f"{field} must not be empty", field=field)
    if value != value.strip():
        raise InvalidInput(f"{what} name must not start or end with white space", field=field)
    if len(value) > max_length:
        raise InvalidInput(f"{what} name is longer than {max_length} characters", field=field)
    if _CONTROL.search(value):
        raise InvalidInput(f"{what} name must not contain control characters", field=field)
    return value
