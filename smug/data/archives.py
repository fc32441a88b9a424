"""Checking and unpacking what was downloaded: SHA-256 lists and digests, and extracting only the
HDF5 members of a tar archive, each checked (no links, no paths outside the destination, sizes
and counts bounded by :class:`ArchiveLimits`) before it is written.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


from smug.utils import write_text_atomic

LOG = logging.getLogger(__name__)

_GNU_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")


_BSD_LINE = re.compile(r"SHA256 ?\((?P<name>.+)\) ?= ?(?P<digest>[0-9a-fA-F]{64})")


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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


def disk_full_error(name: str, part: Path, exc: OSError) -> DownloadError:
    """A full disk is no connection problem worth retrying: one error naming the archive."""
    return DownloadError(
        f"{name}: the disk is full ({exc.strerror or exc}) while downloading into {part}; "
        f"{file_size(part)} bytes are kept there, free space and run again to resume"
    )


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
    if exc.errno in DISK_FULL:
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


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
