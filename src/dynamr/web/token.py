"""The cluster's web token (see :mod:`dynamr.web.http`), apart so the command line computes it without
loading the web server."""

from __future__ import annotations

import hashlib
import hmac


def web_token(secret: bytes) -> str:
    """The token that opens the cluster's HTTP endpoints (derived from the secret; not the secret)."""
    return hmac.new(secret, b"dynamr web access", hashlib.sha256).hexdigest()[:40]
