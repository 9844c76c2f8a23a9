"""Files that come with a request: base64 and data: URLs decoded, URLs fetched from allowed hosts
only, and names made safe and unique (plans refer to files by name)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
import time
from pathlib import PurePath
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import httpx

from planner_service.api.errors import ApiError
from planner_service.api.schemas import Upload
from shared.settings import Settings


def fetch_url(url: str, name: str | None, field: str, api: Settings) -> Upload:
    """Fetch a URL only if its host is allow-listed (no SSRF); never a redirect elsewhere."""
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise ApiError(400, "the URL contains whitespace or a control character", field=field)
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError as exc:
        raise ApiError(400, f"not a valid URL: {exc}", field=field) from exc
    if parts.scheme not in ("http", "https") or not host:
        raise ApiError(400, "only http(s) URLs or data: URLs are accepted", field=field)
    if not host_allowed(host, api.api_fetch_hosts):
        raise ApiError(400, f"fetching from host {host!r} is not allowed (HGQ_API_FETCH_HOSTS)", field=field)
    if not api.api_fetch_private:
        refuse_internal_address(host, parts.port or (443 if parts.scheme == "https" else 80), field)
    limit = api.api_max_upload_bytes
    deadline = time.monotonic() + api.api_fetch_timeout_s  # for the whole fetch, not per read
    try:
        with httpx.Client(follow_redirects=False, timeout=api.api_fetch_timeout_s) as http, \
                http.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise ApiError(400, f"fetching the URL answered HTTP {resp.status_code}", field=field)
            data = bytearray()
            for chunk in resp.iter_bytes():
                data += chunk
                if len(data) > limit:
                    raise ApiError(413, f"the URL's file exceeds {limit} bytes", field=field)
                if time.monotonic() > deadline:
                    raise ApiError(400, f"fetching the URL took longer than {api.api_fetch_timeout_s:g} s "
                                        "(HGQ_API_FETCH_TIMEOUT_S)", field=field)
    except httpx.HTTPError as exc:
        raise ApiError(400, f"fetching the URL failed: {exc}", field=field) from exc
    return Upload(name=name or PurePath(parts.path).name or "download", data=bytes(data), field=field)


def refuse_internal_address(host: str, port: int, field: str) -> None:
    """An allow-listed name must not lead inside: every address it resolves to must be public
    (no loopback, private, link-local, cloud metadata, multicast or reserved ranges), unless
    HGQ_API_FETCH_PRIVATE allows it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ApiError(400, f"cannot resolve host {host!r}: {exc}", field=field) from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            raise ApiError(400, f"host {host!r} resolves to {address}, an internal address: not fetched "
                                "(HGQ_API_FETCH_PRIVATE=true allows it)", field=field)


def host_allowed(host: str, allowed: list[str]) -> bool:
    for pattern in allowed:
        pattern = pattern.lower().strip()
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
        if host == pattern:
            return True
    return False


_EXT_OF = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
           "image/bmp": ".bmp", "audio/wav": ".wav", "audio/flac": ".flac", "audio/ogg": ".ogg",
           "audio/mpeg": ".mp3"}


def safe_name(name: str, mime: str) -> str:
    """A plain file name (no directories, no odd characters); one without an extension gets the
    content's. The name is what plans refer to, so an existing extension is kept."""
    base = PurePath(name.replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")[:80] or "file"
    if "." not in base:
        base += _EXT_OF.get(mime, "")
    return base


def unique_name(name: str, taken: dict[str, Any]) -> str:
    if name not in taken:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    i = 2
    while f"{stem}-{i}{'.' + ext if ext else ''}" in taken:
        i += 1
    return f"{stem}-{i}{'.' + ext if ext else ''}"


def decode_b64(data: str, field: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "not valid base64", field=field) from exc


def data_url_bytes(url: str, field: str) -> bytes:
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:"):
        raise ApiError(400, "malformed data: URL", field=field)
    if head.endswith(";base64"):
        return decode_b64(payload, field)
    return unquote_to_bytes(payload)
