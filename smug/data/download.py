"""Fetching the licensed fastMRI archives: resumable download, SHA256 check, safe flat extraction.

After signing fastMRI's data-use agreement a user is e-mailed signed download URLs (they expire,
after which the server answers HTTP 403) for archives such as ``knee_multicoil_val.tar.xz``, and
the archives' SHA256 hashes. The archives are tens to hundreds of GB, so a download must survive
dropped connections (it resumes a ``.part`` file with HTTP ``Range`` requests, like ``curl -C -``)
and must never leave a corrupt archive under its final name. Extraction writes a marker file last,
so an interrupted extraction never passes for a finished one.

Both are bounded: a download by the archive's known size or else a ceiling (``max_bytes``), checked
against the announced length before a byte is written and while the body streams; redirects only
to http(s); an extraction by :class:`ArchiveLimits` (member count, member size, total expansion
relative to the archive), checked from each member's header before its body is written.

Only the standard library speaks HTTP here (``urllib.request``).
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from smug.data.archives import DISK_FULL, DownloadError, disk_full_error, file_size, sha256_of

LOG = logging.getLogger(__name__)

FASTMRI_SITE = "https://fastmri.med.nyu.edu/"
_USER_AGENT = "smug-fetch/0.1 (python urllib)"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_CONTENT_RANGE = re.compile(r"bytes (?:(?P<start>\d+)-(?P<end>\d+)|\*)/(?P<total>\d+|\*)")
# Server answers worth another try; every other 4xx is the request's fault and will not change.
_RETRY_STATUSES = {408, 429}
_REDIRECT_SCHEMES = ("http", "https")

# The ceilings a direct library call gets. The pipeline passes its own, fastmri.limits of
# config/config.yaml (rule fetch_fastmri); tests/test_reliability_downloads.py checks that the two
# agree. fastMRI's largest archive (brain multicoil train) is about 1.3 TB, its largest volume
# about 1.5 GB, its largest archive about 5,000 volumes, and xz shrinks k-space by well under 2x.
MAX_DOWNLOAD_BYTES = 2_000_000_000_000


class _TransientError(Exception):
    """A failed attempt worth retrying (connection lost, timeout, 5xx); the ``.part`` is kept."""


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    expected_size: int | None = None,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> Path:
    """Download ``url`` to ``dest`` resumably, verifying its SHA256 before it gets its final name.

    The body streams into ``dest`` + ``.part``; an existing ``.part`` (an earlier interrupted run)
    is resumed with ``Range: bytes=<size>-``. A server that ignores the range (HTTP 200) restarts
    the file from zero; HTTP 416 means the ``.part`` is already complete. Connection errors,
    timeouts, truncated bodies, 5xx, 408 and 429 are retried after ``backoff * 2**k`` seconds,
    resuming from the bytes already received; ``retries`` counts consecutive attempts that made no
    progress, so a flaky but working connection still finishes a very large archive.

    The size is bounded: by ``expected_size`` when the archive's size is known, else by
    ``max_bytes``. A length the server announces (``Content-Length``, ``Content-Range``) beyond it
    (or, with ``expected_size``, different from it) is refused before a byte is written, and a
    body that runs past it is stopped there and deleted. Redirects are followed to http(s) URLs
    only (never ``ftp://``, ``file://``, ...).

    When ``dest`` exists already it is returned untouched if its digest matches (or no digest is
    given); otherwise it is replaced only by a download that passes the check.

    Args:
        url: http(s) URL, e.g. a signed fastMRI link; its query string (the signature) is never
            logged or put in an error message.
        dest: final path of the file.
        expected_sha256: hex digest the file must have; ``None`` skips the check.
        retries: further attempts after a failed one.
        backoff: seconds before the first retry, doubled for each following one.
        timeout: socket timeout in seconds, for connecting and for each read.
        progress: show a tqdm progress bar on stderr.
        chunk_size: bytes per read.
        expected_size: the archive's size in bytes, where known.
        max_bytes: the most bytes accepted when ``expected_size`` is not given.

    Returns:
        ``dest`` as a Path.

    Raises:
        ValueError: a URL that is not http(s), a malformed digest, negative ``retries``, or a
            size bound below 1.
        DownloadError: HTTP 403 (the signed link has probably expired) or 404, other client
            errors, retries exhausted, a SHA256 mismatch (the mismatching ``.part`` is deleted), a
            redirect to another scheme than http(s), or a size beyond the bound (a body that
            outgrew it is deleted).
    """
    dest = Path(dest)
    expected = _check_request(url, dest, expected_sha256, retries, expected_size, max_bytes)
    if dest.exists() and _already_there(dest, expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    fetch = dict(timeout=timeout, progress=progress, chunk_size=chunk_size)
    _fetch_with_retries(url, part, dest.name, retries, backoff, expected_size, max_bytes, fetch)
    _verify(part, dest.name, expected, expected_size)
    os.replace(part, dest)
    LOG.info("downloaded %s (%d bytes)", dest, dest.stat().st_size)
    return dest


def _check_request(
    url: str,
    dest: Path,
    expected_sha256: str | None,
    retries: int,
    expected_size: int | None,
    max_bytes: int,
) -> str | None:
    """The arguments of :func:`download` checked; returns the expected digest, normalised."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{dest.name}: download URL must be http(s), got {_redact(url)!r}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    for key, value in (("expected_size", expected_size), ("max_bytes", max_bytes)):
        if value is not None and value < 1:
            raise ValueError(f"{dest.name}: {key} must be >= 1, got {value}")
    if expected_sha256 is None:
        return None
    if not _HEX64.fullmatch(expected_sha256.strip()):
        raise ValueError(f"{dest.name}: expected SHA256 is not 64 hex digits: {expected_sha256!r}")
    return expected_sha256.strip().lower()


def _already_there(dest: Path, expected: str | None) -> bool:
    """Whether an existing ``dest`` is kept: no digest to check, or its digest matches."""
    if expected is None:
        LOG.info("%s exists and no SHA256 was given; not downloading", dest)
        return True
    actual = sha256_of(dest)
    if actual == expected:
        LOG.info("%s exists and its SHA256 matches; not downloading", dest)
        return True
    LOG.warning(
        "%s exists but its SHA256 %s is not the expected %s; downloading anew", dest, actual, expected
    )
    return False


def _fetch_with_retries(
    url: str,
    part: Path,
    name: str,
    retries: int,
    backoff: float,
    expected_size: int | None,
    max_bytes: int,
    fetch: dict,
) -> None:
    """Fetch into ``part`` until complete, retrying transient errors after ``backoff * 2**k``
    seconds; only an attempt that got no new byte counts against ``retries``."""
    failures = 0
    while True:
        size_before = file_size(part)
        try:
            _fetch_into(url, part, name, expected_size=expected_size, max_bytes=max_bytes, **fetch)
            return
        except _TransientError as exc:
            # Reset the count when bytes arrived: only an attempt that got nowhere is a strike.
            failures = 1 if file_size(part) > size_before else failures + 1
            if failures > retries:
                kept = (
                    f"{file_size(part)} bytes are kept in {part}, run again to resume"
                    if part.exists()
                    else "nothing was downloaded, run again to retry"
                )
                raise DownloadError(
                    f"{name}: download from {_redact(url)} failed after {failures} attempt(s) without "
                    f"progress: {exc}; {kept}"
                ) from exc
            delay = backoff * 2 ** (failures - 1)
            LOG.warning("%s: %s; retry %d of %d in %.1f s", name, exc, failures, retries, delay)
            time.sleep(delay)


def _verify(part: Path, name: str, expected: str | None, expected_size: int | None) -> None:
    """The finished ``part`` has the archive's size and digest, else it is deleted."""
    if expected_size is not None and file_size(part) != expected_size:
        size = file_size(part)
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{name}: the download has {size} bytes, the archive {expected_size}; "
            f"the wrong download was deleted, run again to download anew"
        )
    if expected is not None:
        actual = sha256_of(part)
        if actual != expected:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{name}: SHA256 mismatch, expected {expected} but the download has {actual}; "
                f"the corrupt download was deleted, run again to download anew"
            )


class _HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only; any other scheme is a :class:`DownloadError`.

    urllib itself follows ``ftp://`` redirects (and answers other schemes with a bare HTTP error):
    both are refused here, naming the archive and the scheme, before anything is fetched.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def _refuse_other_schemes(self, req, fp, code: int, newurl: str) -> None:
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in _REDIRECT_SCHEMES:
            fp.close()
            raise DownloadError(
                f"{self.name}: {_redact(req.full_url)} redirected (HTTP {code}) to the "
                f"{scheme or 'scheme-less'}:// URL {_redact(newurl)}; only http and https redirects are "
                f"followed, not downloading"
            )

    def http_error_302(self, req, fp, code, msg, headers):
        # urllib refuses schemes other than http, https and ftp here, before redirect_request, with
        # an HTTPError that names neither the archive nor the scheme: check first.
        location = headers.get("location") or headers.get("uri")
        if location:
            self._refuse_other_schemes(req, fp, code, urllib.parse.urljoin(req.full_url, location))
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self._refuse_other_schemes(req, fp, code, newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch_into(
    url: str,
    part: Path,
    name: str,
    *,
    timeout: float,
    progress: bool,
    chunk_size: int,
    expected_size: int | None = None,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> None:
    """One attempt: append the rest of the body to ``part``; return once it is complete.

    Raises ``_TransientError`` for failures worth retrying, ``DownloadError`` for the others.
    """
    limit = expected_size if expected_size is not None else max_bytes
    bound = (
        f"the archive's known size of {expected_size} bytes"
        if expected_size is not None
        else f"the download ceiling of {max_bytes} bytes (fastmri.limits.max_download_bytes)"
    )
    offset = file_size(part)
    if offset > limit:
        part.unlink()
        raise DownloadError(f"{name}: {part} holds {offset} bytes, more than {bound}; deleted it")

    def check_announced(total: int | None, header: str) -> None:
        if total is None:
            return
        if (expected_size is not None and total != expected_size) or total > limit:
            raise DownloadError(
                f"{name}: the server announces {total} bytes ({header}) from {_redact(url)}, "
                f"{'not' if expected_size is not None else 'more than'} {bound}; not downloading"
            )

    response = _open(url, part, name, offset, timeout)
    if response is None:
        return
    with response:
        if response.status == 206:
            start, _, total = _parse_content_range(response.headers.get("Content-Range"))
            check_announced(total, "Content-Range")
            if start != offset:
                part.unlink(missing_ok=True)
                raise _TransientError(
                    f"asked for bytes from {offset}, the server sent from {start}; restarting"
                )
            mode = "ab"
        elif response.status == 200:
            if offset:
                LOG.info("%s: the server ignored the Range request; restarting from zero", name)
            offset = 0
            mode = "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            check_announced(total, "Content-Length")
        else:
            raise DownloadError(f"{name}: unexpected HTTP {response.status} from {_redact(url)}")

        if total is None:
            total = expected_size
        received = _stream(response, part, name, mode, offset, total, limit, chunk_size, progress)
        if received is None:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{name}: the server sent more than {bound} from {_redact(url)}; stopped there and "
                f"deleted the partial download"
            )
    if total is not None and received < total:
        raise _TransientError(f"connection closed after {received} of {total} bytes")


def _open(url: str, part: Path, name: str, offset: int, timeout: float):
    """The response to a request for the body from byte ``offset`` on (redirects to http(s) only),
    or None when the server says ``part`` is already complete (HTTP 416 at its size)."""
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(_HttpRedirectsOnly(name))
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        try:
            if exc.code == 416 and offset:
                total = _parse_content_range(exc.headers.get("Content-Range"))[2]
                if total is None or total == offset:
                    LOG.info("%s: the server says %s is complete (HTTP 416)", name, part)
                    return None
                # Longer than the file itself: not a prefix of this archive, so nothing to resume.
                LOG.warning("%s: %s has %d bytes but the archive %d; restarting", name, part, offset, total)
                part.unlink()
                raise _TransientError("partial file longer than the archive") from None
            raise _http_error(exc.code, exc.reason, url, name) from None
        finally:
            exc.close()
    except (OSError, http.client.HTTPException) as exc:
        # URLError (refused, DNS, TLS), timeouts and dropped connections alike.
        raise _TransientError(f"cannot connect to {_redact(url)}: {exc}") from exc


def _stream(
    response,
    part: Path,
    name: str,
    mode: str,
    offset: int,
    total: int | None,
    limit: int,
    chunk_size: int,
    progress: bool,
) -> int | None:
    """Write the body to ``part`` (opened with ``mode``), synced to disk however it ends; returns
    the bytes ``part`` then holds, or None when the body outgrew ``limit`` (never more than one
    byte past it is read)."""
    received = offset
    with (
        open(part, mode) as out,
        tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=name,
            file=sys.stderr,
            disable=not progress,
        ) as bar,
    ):
        try:
            while block := response.read(min(chunk_size, limit - received + 1)):
                if received + len(block) > limit:
                    return None
                out.write(block)
                received += len(block)
                bar.update(len(block))
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, OSError) and exc.errno in DISK_FULL:
                raise disk_full_error(name, part, exc) from exc
            raise _TransientError(f"connection lost after {received} bytes: {exc!r}") from exc
        finally:
            # The bytes received so far are what the next attempt resumes from.
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                if exc.errno not in DISK_FULL:
                    raise
                raise disk_full_error(name, part, exc) from exc
    return received


def _http_error(code: int, reason: str, url: str, name: str) -> Exception:
    where = _redact(url)
    if code == 403:
        return DownloadError(
            f"{name}: the server refused the download (HTTP 403 Forbidden) from {where}. The signed fastMRI "
            f"link has probably expired: request new links on the NYU fastMRI site ({FASTMRI_SITE}) and "
            f"put them in `fastmri.urls` of the config"
        )
    if code == 404:
        return DownloadError(
            f"{name}: not found on the server (HTTP 404) at {where}; check the URL in `fastmri.urls` of the "
            f"config against the links fastMRI sent"
        )
    if code >= 500 or code in _RETRY_STATUSES:
        return _TransientError(f"HTTP {code} {reason} from {where}")
    return DownloadError(f"{name}: HTTP {code} {reason} from {where}")


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``bytes 100-199/200`` -> ``(100, 199, 200)``; ``bytes */200`` -> ``(None, None, 200)``."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None, None, None

    def number(key: str) -> int | None:
        text = match[key]
        return int(text) if text and text != "*" else None

    return number("start"), number("end"), number("total")


def _redact(url: str) -> str:
    """The URL without its query string and fragment, where a signed link keeps its signature."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
