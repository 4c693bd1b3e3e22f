"""Masking secrets before they are logged or printed: secret-looking keys, and passwords inside URLs."""

from __future__ import annotations

import re
from typing import Any

# whole words of a key (sample_tokens is not a token; db_password and api_key are secrets)
SECRET_KEY = re.compile(
    r"(^|[_.-])(password|passwd|secret|token|credentials?|(api|access|private|secret)[_-]?key)($|[_.-])", re.IGNORECASE
)
URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^/\s:@]+):[^/\s@]+@", re.IGNORECASE)


def mask_secrets(data: Any, key: str = "") -> Any:
    """`data` with the value of every secret-looking key, and every password in a URL, replaced by ***."""
    if isinstance(data, dict):
        return {k: mask_secrets(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_secrets(v, key) for v in data]
    if SECRET_KEY.search(key) and data not in (None, ""):
        return "***"
    if isinstance(data, str):
        return URL_PASSWORD.sub(r"\g<scheme>:***@", data)
    return data
