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

import errno
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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from smug.utils import write_text_atomic

LOG = logging.getLogger(__name__)

FASTMRI_SITE = "https://fastmri.med.nyu.edu/"
_USER_AGENT = "smug-fetch/0.1 (python urllib)"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_GNU_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")
_BSD_LINE = re.compile(r"SHA256 ?\((?P<name>.+)\) ?= ?(?P<digest>[0-9a-fA-F]{64})")
_CONTENT_RANGE = re.compile(r"bytes (?:(?P<start>\d+)-(?P<end>\d+)|\*)/(?P<total>\d+|\*)")
# Server answers worth another try; every other 4xx is the request's fault and will not change.
_RETRY_STATUSES = {408, 429}
_REDIRECT_SCHEMES = ("http", "https")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

# The ceilings a direct library call gets. The pipeline passes its own, fastmri.limits of
# config/config.yaml (rule fetch_fastmri); tests/test_reliability_downloads.py checks that the two
# agree. fastMRI's largest archive (brain multicoil train) is about 1.3 TB, its largest volume
# about 1.5 GB, its largest archive about 5,000 volumes, and xz shrinks k-space by well under 2x.
MAX_DOWNLOAD_BYTES = 2_000_000_000_000


@dataclass(frozen=True)
class ArchiveLimits:
    """What extracting one archive may write (``fastmri.limits``), checked from each member's header
    before its body is read, so that a crafted or wrong archive (a decompression bomb, millions of
    members) stops with an error naming it instead of filling the disk or running for hours.

    Attributes:
        max_members: members of any kind (folders and skipped files too).
        max_member_bytes: size of one regular member.
        max_expansion: the regular members' sizes together, as a multiple of the archive's size.
    """

    max_members: int = 100_000
    max_member_bytes: int = 20_000_000_000
    max_expansion: float = 20.0

    def __post_init__(self) -> None:
        for key in ("max_members", "max_member_bytes"):
            if getattr(self, key) < 1:
                raise ValueError(f"ArchiveLimits.{key} must be >= 1, got {getattr(self, key)}")
        if not self.max_expansion >= 1:
            raise ValueError(f"ArchiveLimits.max_expansion must be >= 1, got {self.max_expansion}")


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
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{dest.name}: download URL must be http(s), got {_redact(url)!r}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    for key, value in (("expected_size", expected_size), ("max_bytes", max_bytes)):
        if value is not None and value < 1:
            raise ValueError(f"{dest.name}: {key} must be >= 1, got {value}")
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
            _fetch_into(
                url,
                part,
                dest.name,
                timeout=timeout,
                progress=progress,
                chunk_size=chunk_size,
                expected_size=expected_size,
                max_bytes=max_bytes,
            )
            break
        except _TransientError as exc:
            # Reset the count when bytes arrived: only an attempt that got nowhere is a strike.
            failures = 1 if _size(part) > size_before else failures + 1
            if failures > retries:
                kept = (
                    f"{_size(part)} bytes are kept in {part}, run again to resume"
                    if part.exists()
                    else "nothing was downloaded, run again to retry"
                )
                raise DownloadError(
                    f"{dest.name}: download from {_redact(url)} failed after {failures} attempt(s) without "
                    f"progress: {exc}; {kept}"
                ) from exc
            delay = backoff * 2 ** (failures - 1)
            LOG.warning("%s: %s; retry %d of %d in %.1f s", dest.name, exc, failures, retries, delay)
            time.sleep(delay)

    if expected_size is not None and _size(part) != expected_size:
        size = _size(part)
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{dest.name}: the download has {size} bytes, the archive {expected_size}; "
            f"the wrong download was deleted, run again to download anew"
        )
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
    offset = _size(part)
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

    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(_HttpRedirectsOnly(name))
    try:
        response = opener.open(request, timeout=timeout)
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
        received = offset
        overflow = False
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
                # Never more than one byte past the bound is read: the body stops where it outgrows it.
                while block := response.read(min(chunk_size, limit - received + 1)):
                    if received + len(block) > limit:
                        overflow = True
                        break
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
                    raise _disk_full(name, part, exc) from exc
                raise _TransientError(f"connection lost after {received} bytes: {exc!r}") from exc
            finally:
                # The bytes received so far are what the next attempt resumes from.
                try:
                    out.flush()
                    os.fsync(out.fileno())
                except OSError as exc:
                    if exc.errno not in _DISK_FULL:
                        raise
                    raise _disk_full(name, part, exc) from exc
        if overflow:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{name}: the server sent more than {bound} from {_redact(url)}; stopped there and "
                f"deleted the partial download"
            )
    if total is not None and received < total:
        raise _TransientError(f"connection closed after {received} of {total} bytes")


def _disk_full(name: str, part: Path, exc: OSError) -> DownloadError:
    """A full disk is no connection problem worth retrying: one error naming the archive."""
    return DownloadError(
        f"{name}: the disk is full ({exc.strerror or exc}) while downloading into {part}; "
        f"{_size(part)} bytes are kept there, free space and run again to resume"
    )


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
    archive: str | os.PathLike,
    dest_dir: str | os.PathLike,
    *,
    marker_name: str = ".complete",
    limits: ArchiveLimits = ArchiveLimits(),
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

    ``limits`` bounds the member count, each member's size and the members' total size relative to
    the archive's, from the member headers, before a member's body is written. A full disk
    (``ENOSPC``) stops the extraction with one error naming the archive and the member; the staged
    members are deleted and no marker is written.

    Returns:
        The extracted files, sorted by name.

    Raises:
        FileNotFoundError: no marker and no archive.
        ValueError: unreadable or truncated archive, unsafe member, two ``.h5`` members with the
            same name, no ``.h5`` member at all, or a limit exceeded; the message names the archive.
        OSError: a member or the marker could not be written (full disk, ...); the message names
            the archive (and the member).
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
        names = sorted(_extract_h5_members(archive, staging, limits))
        if not names:
            raise ValueError(f"{archive}: the archive holds no .h5 file")
        try:
            for name in names:
                os.replace(staging / name, dest_dir / name)
            write_text_atomic(dest_dir / marker_name, "".join(f"{name}\n" for name in names))
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"{archive}: cannot move the extracted files into {dest_dir} or write its marker "
                f"{marker_name} ({exc}); no marker was written, run again to extract anew",
            ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    LOG.info("extracted %d files from %s into %s", len(names), archive.name, dest_dir)
    return [dest_dir / name for name in names]


def _extract_h5_members(archive: Path, staging: Path, limits: ArchiveLimits = ArchiveLimits()) -> set[str]:
    """Stream through the archive once, writing each ``.h5`` member to ``staging/<base name>``."""
    names: set[str] = set()  # a set: the duplicate check stays O(1) for archives of many members
    archive_size = archive.stat().st_size
    max_total = limits.max_expansion * max(archive_size, 1)
    members = total = 0
    try:
        # Stream mode ("r|*"): one sequential pass, as an xz archive of hundreds of GB deserves.
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                members += 1
                if members > limits.max_members:
                    raise ValueError(
                        f"{archive}: more than {limits.max_members} members (fastmri.limits.max_members); "
                        f"not a fastMRI archive, not extracting"
                    )
                _check_member(archive, member)
                if member.isfile():
                    # Checked from the header, before the body is decompressed: skipped members too.
                    if member.size > limits.max_member_bytes:
                        raise ValueError(
                            f"{archive}: member {member.name!r} expands to {member.size} bytes, more than "
                            f"{limits.max_member_bytes} (fastmri.limits.max_member_bytes); not extracting"
                        )
                    total += member.size
                    if total > max_total:
                        raise ValueError(
                            f"{archive}: the members up to {member.name!r} expand to {total} bytes, more "
                            f"than {limits.max_expansion:g} times the archive's {archive_size} bytes "
                            f"(fastmri.limits.max_expansion); a decompression bomb? not extracting"
                        )
                if not member.isfile() or not member.name.endswith(".h5"):
                    continue
                name = PurePosixPath(member.name).name
                if name in names:
                    raise ValueError(f"{archive}: two members are named {name}; flattening would merge them")
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has a body
                try:
                    with source, open(staging / name, "wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
                        out.flush()
                        os.fsync(out.fileno())
                except OSError as exc:
                    raise _write_error(archive, member.name, staging, exc) from exc
                names.add(name)
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError) as exc:
        raise ValueError(f"{archive}: not a readable (or a truncated) tar archive: {exc}") from exc
    return names


def _write_error(archive: Path, member: str, staging: Path, exc: OSError) -> OSError:
    """One error naming the archive and the member that could not be written (the caller deletes
    the staging folder, so nothing half-extracted is left, and no marker is written)."""
    if exc.errno in _DISK_FULL:
        reason, remedy = "the disk is full (no space left on device)", "free space"
    else:
        reason, remedy = f"cannot write it: {exc.strerror or exc}", "fix that"
    return OSError(
        exc.errno,
        f"{archive}: extracting member {member!r} into {staging.parent} failed, {reason}; nothing of the "
        f"archive was kept and no marker written, {remedy} and run again",
    )


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
