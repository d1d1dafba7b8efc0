"""Transaction file uploads of the platform API: the request body is streamed to a temporary file
(never held in memory, cut off at the size limit), checked, then handed to
``include.ingest.upload.upload_files`` (S3 ``incoming/<store_id>/``, a ``pending`` transaction_files row).

Refused, with nothing stored in S3 or the database: a file name that is not a plain name (path
separators, ``..``, control characters), an extension other than .csv/.json/.jsonl/.ndjson (415), a
content type that is not a text/JSON/octet-stream one (415), content that is not UTF-8 text (415),
an empty body (422), more than ``api_max_upload_mb`` (413, also told early by Content-Length).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from typing import AsyncIterator, Iterator

from include.access.errors import Invalid, TooLarge, Unsupported
from include.ingest.upload import EXTENSIONS

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,199}$")
CONTENT_TYPES = {"application/octet-stream", "text/csv", "text/plain", "application/json", "application/x-ndjson",
                 "application/jsonl", "application/x-jsonlines"}


def check_name(filename: str) -> str:
    """The file type of a plain file name, or a refusal saying what is wrong with the name."""
    if not filename:
        raise Invalid("filename is required (query parameter)")
    if "/" in filename or "\\" in filename or ".." in filename:
        raise Invalid(f"filename {filename!r} must be a plain file name: no path separators or '..'")
    if not NAME.match(filename):
        raise Invalid(f"filename {filename!r} may only hold letters, digits, '.', '_', '-' and spaces "
                      "(at most 200, starting with a letter or digit)")
    ext = os.path.splitext(filename)[1].lower()
    if ext not in EXTENSIONS:
        raise Unsupported(f"file type {ext or '(none)'!r} of {filename!r} is not accepted: "
                          f"use {', '.join(sorted(EXTENSIONS))}")
    return EXTENSIONS[ext]


def check_content_type(content_type: str | None) -> None:
    base = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if base not in CONTENT_TYPES:
        raise Unsupported(f"content type {base!r} is not accepted: send the file as the raw body with one of "
                          f"{', '.join(sorted(CONTENT_TYPES))}")


def check_length(content_length: str | None, max_bytes: int) -> None:
    if content_length and content_length.isdigit() and int(content_length) > max_bytes:
        raise TooLarge(f"file of {int(content_length)} bytes is larger than the limit of {max_bytes} bytes "
                       "(server_configs.api_max_upload_mb)")


def _check_text(head: bytes, file_type: str, filename: str) -> None:
    if b"\x00" in head:
        raise Unsupported(f"{filename}: content is binary (NUL bytes), a {file_type} text file is expected")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # a character cut at the end of the sample is fine
            raise Unsupported(f"{filename}: content is not UTF-8 text (byte {e.start})") from None
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if file_type == "json" and first not in (b"{", b"["):
        raise Unsupported(f"{filename}: a JSON/JSON Lines file must start with '{{' or '[', starts with {first!r}")


@contextmanager
def spooled_dir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="platform-upload-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def receive(chunks: AsyncIterator[bytes], directory: str, filename: str, file_type: str,
                  max_bytes: int) -> str:
    """Write the streamed body to ``directory/filename``; its path. Refuses oversized, empty and
    non-text content (the partial file is left for the caller's ``spooled_dir`` to remove)."""
    path = os.path.join(directory, filename)
    size, head = 0, b""
    with open(path, "wb") as f:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"{filename}: larger than the limit of {max_bytes} bytes "
                               "(server_configs.api_max_upload_mb)")
            if len(head) < 65536:
                head += chunk[:65536 - len(head)]
            f.write(chunk)
    if size == 0:
        raise Invalid(f"{filename}: the file is empty")
    _check_text(head, file_type, filename)
    return path
