"""Credentials inside backend URLs (``http://user:secret@host``): taken out of the URL before
any client sees it, so no logged request line (httpx logs every URL at INFO) carries them,
and sent as HTTP basic auth instead, as the URL asked."""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit, urlunsplit


def userinfo(url: str) -> tuple[str, str] | None:
    """The user and password (percent-decoded) in ``url``, or None when it has no ``@``
    part. Returns them; raises nothing."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if "@" not in parts.netloc:
        return None
    user, _, password = parts.netloc.rpartition("@")[0].partition(":")
    return unquote(user), unquote(password)


def without_userinfo(url: str) -> str:
    """``url`` without its ``user:password@`` part (unchanged when it has none). Returns the
    URL; raises nothing."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def basic_auth_header(url: str) -> dict[str, str]:
    """``{"Authorization": "Basic ..."}`` for the user and password in ``url``, or ``{}``
    without them. Returns the headers; raises nothing."""
    found = userinfo(url)
    if found is None:
        return {}
    token = base64.b64encode(f"{found[0]}:{found[1]}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}
