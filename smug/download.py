"""Fetching the licensed fastMRI archives: resumable download, SHA256 check, safe flat extraction.

After signing fastMRI's data-use agreement a user is e-mailed signed download URLs (they expire,
after which the server answers HTTP 403) for archives such as ``knee_multicoil_val.tar.xz``, and
the archives' SHA256 hashes. The archives are tens to hundreds of GB, so a download must survive
dropped connections (it resumes a ``.part`` file with HTTP ``Range`` requests, like ``curl -C -``)
and must never leave a corrupt archive under its final name. Extraction writes a marker file last,
so an interrupted extraction never passes for a finished one.

Only the standard library speaks HTTP here (``urllib.request``).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import lzma
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from smug.io import write_text_atomic

LOG = logging.getLogger(__name__)

FASTMRI_SITE = "https://fastmri.med.nyu.edu/"
_USER_AGENT = "smug-fetch/0.1 (python urllib)"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_GNU_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")
_BSD_LINE = re.compile(r"SHA256 ?\((?P<name>.+)\) ?= ?(?P<digest>[0-9a-fA-F]{64})")
_CONTENT_RANGE = re.compile(r"bytes (?:(?P<start>\d+)-(?P<end>\d+)|\*)/(?P<total>\d+|\*)")
# Server answers worth another try; every other 4xx is the request's fault and will not change.
_RETRY_STATUSES = {408, 429}


class DownloadError(RuntimeError):
    """A download that cannot succeed as asked: refused, missing, corrupt, or out of retries."""


class _TransientError(Exception):
    """A failed attempt worth retrying (connection lost, timeout, 5xx); the ``.part`` is kept."""


def read_sha256_file(path: str | os.PathLike) -> dict[str, str]:
    """Parse a SHA256 hash file into ``{archive file name: lowercase hex digest}``.

    Accepted lines: ``sha256sum``'s ``<hex>  name`` (text mode) and ``<hex> *name`` (binary mode),
    and BSD ``SHA256 (name) = <hex>``; blank lines and ``#`` comments are skipped. Names are keyed
    by their base name (``./data/knee.tar.xz`` -> ``knee.tar.xz``), which is how the archives are
    looked up.

    Raises:
        ValueError: a line in neither format, one name given two different digests, or no entry
            at all; the message names the file and the line number.
    """
    path = Path(path)
    digests: dict[str, str] = {}
    for line_no, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _GNU_LINE.fullmatch(line) or _BSD_LINE.fullmatch(line)
        if match is None:
            raise ValueError(
                f"{path}, line {line_no}: not a SHA256 line ('<64 hex digits>  name' or "
                f"'SHA256 (name) = <64 hex digits>'): {raw!r}"
            )
        name = PurePosixPath(match["name"].strip()).name
        digest = match["digest"].lower()
        if digests.get(name, digest) != digest:
            raise ValueError(f"{path}, line {line_no}: {name} has two different digests")
        digests[name] = digest
    if not digests:
        raise ValueError(f"{path}: no SHA256 entry in the file")
    return digests


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Lowercase hex SHA256 of a file, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


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
) -> Path:
    """Download ``url`` to ``dest`` resumably, verifying its SHA256 before it gets its final name.

    The body streams into ``dest`` + ``.part``; an existing ``.part`` (an earlier interrupted run)
    is resumed with ``Range: bytes=<size>-``. A server that ignores the range (HTTP 200) restarts
    the file from zero; HTTP 416 means the ``.part`` is already complete. Connection errors,
    timeouts, truncated bodies, 5xx, 408 and 429 are retried after ``backoff * 2**k`` seconds,
    resuming from the bytes already received; ``retries`` counts consecutive attempts that made no
    progress, so a flaky but working connection still finishes a very large archive.

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

    Returns:
        ``dest`` as a Path.

    Raises:
        ValueError: a URL that is not http(s), a malformed digest, or negative ``retries``.
        DownloadError: HTTP 403 (the signed link has probably expired) or 404, other client
            errors, retries exhausted, or a SHA256 mismatch; the mismatching ``.part`` is deleted.
    """
    dest = Path(dest)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{dest.name}: download URL must be http(s), got {_redact(url)!r}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    expected = None
    if expected_sha256 is not None:
        if not _HEX64.fullmatch(expected_sha256.strip()):
            raise ValueError(f"{dest.name}: expected SHA256 is not 64 hex digits: {expected_sha256!r}")
        expected = expected_sha256.strip().lower()

    if dest.exists():
        if expected is None:
            LOG.info("%s exists and no SHA256 was given; not downloading", dest)
            return dest
        actual = sha256_of(dest)
        if actual == expected:
            LOG.info("%s exists and its SHA256 matches; not downloading", dest)
            return dest
        LOG.warning(
            "%s exists but its SHA256 %s is not the expected %s; downloading anew", dest, actual, expected
        )

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    failures = 0
    while True:
        size_before = _size(part)
        try:
            _fetch_into(url, part, dest.name, timeout=timeout, progress=progress, chunk_size=chunk_size)
            break
        except _TransientError as exc:
            # Reset the count when bytes arrived: only an attempt that got nowhere is a strike.
            failures = 1 if _size(part) > size_before else failures + 1
            if failures > retries:
                raise DownloadError(
                    f"{dest.name}: download from {_redact(url)} failed after {failures} attempt(s) without "
                    f"progress: {exc}; {_size(part)} bytes are kept in {part}, run again to resume"
                ) from exc
            delay = backoff * 2 ** (failures - 1)
            LOG.warning("%s: %s; retry %d of %d in %.1f s", dest.name, exc, failures, retries, delay)
            time.sleep(delay)

    if expected is not None:
        actual = sha256_of(part)
        if actual != expected:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{dest.name}: SHA256 mismatch, expected {expected} but the download has {actual}; "
                f"the corrupt download was deleted, run again to download anew"
            )
    os.replace(part, dest)
    LOG.info("downloaded %s (%d bytes)", dest, dest.stat().st_size)
    return dest


def _fetch_into(url: str, part: Path, name: str, *, timeout: float, progress: bool, chunk_size: int) -> None:
    """One attempt: append the rest of the body to ``part``; return once it is complete.

    Raises ``_TransientError`` for failures worth retrying, ``DownloadError`` for the others.
    """
    offset = _size(part)
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        try:
            if exc.code == 416 and offset:
                total = _parse_content_range(exc.headers.get("Content-Range"))[2]
                if total is None or total == offset:
                    LOG.info("%s: the server says %s is complete (HTTP 416)", name, part)
                    return
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

    with response:
        if response.status == 206:
            start, _, total = _parse_content_range(response.headers.get("Content-Range"))
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
        else:
            raise DownloadError(f"{name}: unexpected HTTP {response.status} from {_redact(url)}")

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
                while block := response.read(chunk_size):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:
                raise _TransientError(f"connection lost after {received} bytes: {exc!r}") from exc
            finally:
                # The bytes received so far are what the next attempt resumes from.
                out.flush()
                os.fsync(out.fileno())
    if total is not None and received < total:
        raise _TransientError(f"connection closed after {received} of {total} bytes")


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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def extracted_files(dest_dir: str | os.PathLike, *, marker_name: str = ".complete") -> list[Path] | None:
    """The files a finished :func:`extract_archive` listed in its marker, or ``None``.

    ``None`` when there is no marker, or when a listed file has gone missing (then the extraction
    has to be redone).
    """
    dest_dir = Path(dest_dir)
    marker = dest_dir / marker_name
    if not marker.is_file():
        return None
    files = [dest_dir / name for name in marker.read_text().splitlines() if name.strip()]
    missing = [path.name for path in files if not path.is_file()]
    if not files or missing:
        LOG.warning("%s lists missing files (%s); extracting again", marker, ", ".join(missing[:5]) or "none")
        return None
    return files


def extract_archive(
    archive: str | os.PathLike, dest_dir: str | os.PathLike, *, marker_name: str = ".complete"
) -> list[Path]:
    """Extract every ``*.h5`` member of a ``.tar.xz`` (or ``.tar``, ``.tar.gz``) directly into ``dest_dir``.

    The folders inside the archive are dropped (fastMRI's ``multicoil_val/file1000000.h5`` lands as
    ``dest_dir/file1000000.h5``); other regular files are skipped. Members go first into a temporary
    sibling directory, are moved into ``dest_dir`` once the whole archive has been read, and the
    marker ``dest_dir/marker_name``, listing the extracted names, is written last. When the marker
    exists (and its files do), the listed files are returned without reading the archive, which
    may have been deleted meanwhile.

    Members are written through ``extractfile`` under their base name only, never with
    ``tarfile.extract``, so nothing can land outside ``dest_dir``; archives holding absolute
    paths, ``..`` components, links or device files are refused outright all the same.

    Returns:
        The extracted files, sorted by name.

    Raises:
        FileNotFoundError: no marker and no archive.
        ValueError: unreadable or truncated archive, unsafe member, two ``.h5`` members with the
            same name, or no ``.h5`` member at all; the message names the archive.
    """
    archive = Path(archive)
    dest_dir = Path(dest_dir)
    done = extracted_files(dest_dir, marker_name=marker_name)
    if done is not None:
        LOG.info("%s already extracted into %s (%d files)", archive.name, dest_dir, len(done))
        return done
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: archive not found (and {dest_dir / marker_name} does not exist)")

    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.extracting-", dir=dest_dir.parent))
    try:
        names = sorted(_extract_h5_members(archive, staging))
        if not names:
            raise ValueError(f"{archive}: the archive holds no .h5 file")
        for name in names:
            os.replace(staging / name, dest_dir / name)
        write_text_atomic(dest_dir / marker_name, "".join(f"{name}\n" for name in names))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    LOG.info("extracted %d files from %s into %s", len(names), archive.name, dest_dir)
    return [dest_dir / name for name in names]


def _extract_h5_members(archive: Path, staging: Path) -> list[str]:
    """Stream through the archive once, writing each ``.h5`` member to ``staging/<base name>``."""
    names: list[str] = []
    try:
        # Stream mode ("r|*"): one sequential pass, as an xz archive of hundreds of GB deserves.
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                _check_member(archive, member)
                if not member.isfile() or not member.name.endswith(".h5"):
                    continue
                name = PurePosixPath(member.name).name
                if name in names:
                    raise ValueError(f"{archive}: two members are named {name}; flattening would merge them")
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has a body
                with source, open(staging / name, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                    out.flush()
                    os.fsync(out.fileno())
                names.append(name)
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError) as exc:
        raise ValueError(f"{archive}: not a readable (or a truncated) tar archive: {exc}") from exc
    return names


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    parts = PurePosixPath(member.name).parts
    if member.name.startswith(("/", "\\")) or ".." in parts or re.match(r"[A-Za-z]:", member.name):
        raise ValueError(f"{archive}: unsafe member {member.name!r} (absolute path or '..'); not extracting")
    if member.issym() or member.islnk():
        raise ValueError(
            f"{archive}: unsafe member {member.name!r} (a link to {member.linkname!r}); not extracting"
        )
    if not (member.isfile() or member.isdir()):
        raise ValueError(
            f"{archive}: unsafe member {member.name!r} (a device or special file); not extracting"
        )
