"""Bounded downloads and extractions (issue 28, case 8): a download never outgrows the archive's
known size or the configured ceiling, redirects only to http(s), an archive cannot expand past its
limits, the duplicate-name check is O(1), and a full disk is one error naming the archive.

Each test builds its own tiny data and uses small limits; the servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import errno
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path, PurePosixPath

import pytest
import yaml

import smug.data.archives
import smug.data.download
from smug.data import DownloadError, extract_archive
from smug.data.download import download
from tests.test_download import (  # noqa: F401 (server is a fixture)
    REPO,
    VOLUMES,
    RangeHandler,
    ServerState,
    fetch,
    fetch_fastmri,
    make_archive,
    server,
    sha,
)

MB = 1 << 20


# --- servers ------------------------------------------------------------------------------------


class BoundsHandler(RangeHandler):
    """RangeHandler, plus a redirect (``state.location``) or an endless-looking body without a
    Content-Length (``state.stream``: bytes sent until the client hangs up, at most that many)."""

    def do_GET(self) -> None:
        state = self.server.state
        if getattr(state, "location", None) and not self.path.startswith("/final"):
            state.requests.append(self.headers.get("Range"))
            self.send_response(302)
            self.send_header("Location", state.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if getattr(state, "stream", None):
            state.requests.append(self.headers.get("Range"))
            self.send_response(200)
            self.end_headers()
            self.close_connection = True
            block = b"\0" * (64 << 10)
            try:
                while state.sent < state.stream:  # bounded: at most state.stream bytes
                    self.wfile.write(block)
                    state.sent += len(block)
            except OSError:
                pass  # the client hung up
            finally:
                state.finished.set()
            return
        super().do_GET()


@pytest.fixture
def bounds_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BoundsHandler)
    httpd.state = ServerState()
    httpd.state.sent, httpd.state.finished = 0, threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, httpd.state
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- downloads ----------------------------------------------------------------------------------


def test_announced_length_beyond_the_ceiling_or_the_known_size_is_refused_before_reading(
    tmp_path: Path, server
) -> None:
    url, state = server
    state.body = b"x" * (2 * MB)
    dest = tmp_path / "knee_multicoil_val.tar.xz"
    part = tmp_path / "knee_multicoil_val.tar.xz.part"
    with pytest.raises(
        DownloadError,
        match=r"knee_multicoil_val\.tar\.xz: the server announces 2097152 bytes \(Content-Length\).*"
        r"more than the download ceiling of 1048576 bytes",
    ):
        fetch(url, dest, max_bytes=MB, retries=0)
    assert not dest.exists() and not part.exists()
    # A known size wins over the ceiling: a length that differs from it is refused either way.
    with pytest.raises(
        DownloadError, match=r"announces 2097152 bytes .* not the archive's known size of 2097151"
    ):
        fetch(url, dest, expected_size=2 * MB - 1, retries=0)
    assert not part.exists() and len(state.requests) == 2
    # Resuming: the total of Content-Range is checked too.
    part.write_bytes(state.body[:1000])
    with pytest.raises(DownloadError, match=r"announces 2097152 bytes \(Content-Range\)"):
        fetch(url, dest, max_bytes=MB, retries=0)
    # Within the bounds the download succeeds.
    assert fetch(url, dest, expected_size=2 * MB, max_bytes=MB).read_bytes() == state.body


def test_body_past_the_ceiling_is_stopped_as_it_arrives_even_with_a_hash(
    tmp_path: Path, bounds_server
) -> None:
    base, state = bounds_server
    state.stream = 64 * MB  # no Content-Length: only the bytes themselves tell the size
    dest = tmp_path / "knee_multicoil_val.tar.xz"
    with pytest.raises(
        DownloadError,
        match=r"knee_multicoil_val\.tar\.xz: the server sent more than the download ceiling of 1048576 bytes",
    ):
        fetch(f"{base}/knee_multicoil_val.tar.xz", dest, max_bytes=MB, retries=0, expected_sha256="0" * 64)
    assert state.finished.wait(20)
    # Stopped near the ceiling (plus what the loopback socket buffers held), not read whole.
    assert state.sent < 32 * MB
    assert not dest.exists() and not (tmp_path / "knee_multicoil_val.tar.xz.part").exists()


@pytest.mark.parametrize(
    "target", ["ftp://127.0.0.1:{port}/knee.tar.xz?Signature=secret", "file:///etc/passwd"]
)
def test_redirect_to_another_scheme_is_refused(tmp_path: Path, bounds_server, target: str) -> None:
    base, state = bounds_server
    state.location = target.format(port=closed_port())
    scheme = target.split(":")[0]
    with pytest.raises(
        DownloadError,
        match=rf"knee_multicoil_val\.tar\.xz: .*redirected \(HTTP 302\) to the {scheme}:// URL "
        r".*only http and https",
    ) as caught:
        fetch(f"{base}/knee_multicoil_val.tar.xz?Signature=secret", tmp_path / "knee_multicoil_val.tar.xz")
    assert "secret" not in str(caught.value)
    assert len(state.requests) == 1  # refused outright, not retried
    assert not list(tmp_path.iterdir())


def test_redirect_to_http_is_followed(tmp_path: Path, bounds_server) -> None:
    base, state = bounds_server
    state.body = b"archive bytes"
    state.location = f"{base}/final/knee_multicoil_val.tar.xz"
    dest = fetch(f"{base}/knee_multicoil_val.tar.xz", tmp_path / "knee_multicoil_val.tar.xz")
    assert dest.read_bytes() == b"archive bytes"


def test_kept_bytes_are_reported_only_when_the_part_exists(tmp_path: Path, server) -> None:
    url, state = server
    dest = tmp_path / "knee_multicoil_val.tar.xz"
    part = tmp_path / "knee_multicoil_val.tar.xz.part"
    state.statuses = [500]
    with pytest.raises(DownloadError, match="knee_multicoil_val.tar.xz: .*HTTP 500") as caught:
        fetch(url, dest, retries=0)
    assert "bytes are kept" not in str(caught.value) and ".part" not in str(caught.value)
    assert not part.exists()
    part.write_bytes(b"0123456789")
    state.statuses = [500]
    with pytest.raises(DownloadError, match=rf"10 bytes are kept in .*{part.name}, run again to resume"):
        fetch(url, dest, retries=0)


def test_disk_full_while_downloading_is_no_connection_error(tmp_path: Path, server, monkeypatch) -> None:
    url, state = server
    state.body = b"x" * 5000
    real_open = open

    class FullDisk(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_disk_open(path, mode="r", *args, **kwargs):
        if str(path).endswith(".part"):
            return FullDisk(path, mode.replace("b", "") + "b")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(smug.data.download, "open", full_disk_open, raising=False)
    with pytest.raises(
        DownloadError,
        match=r"knee_multicoil_val\.tar\.xz: the disk is full .*free space and run again to resume",
    ):
        fetch(url, tmp_path / "knee_multicoil_val.tar.xz", retries=3)
    assert len(state.requests) == 1  # not retried as if the connection had dropped


# --- extraction ---------------------------------------------------------------------------------


def tar_with(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def assert_nothing_extracted(tmp_path: Path, out: Path) -> None:
    assert not (out / ".complete").exists()
    assert not list(out.glob("*.h5"))
    assert not [p for p in tmp_path.iterdir() if "extracting" in p.name]


def test_member_beyond_the_size_limit_is_not_extracted(tmp_path: Path) -> None:
    archive = tar_with(tmp_path / "bomb.tar.gz", {"multicoil_val/file1.h5": b"\0" * (2 * MB)})
    out = tmp_path / "out"
    limits = smug.data.archives.ArchiveLimits(max_member_bytes=MB, max_expansion=1e6)
    with pytest.raises(
        ValueError,
        match=r"bomb\.tar\.gz: member 'multicoil_val/file1\.h5' expands to 2097152 bytes, more than 1048576",
    ):
        extract_archive(archive, out, limits=limits)
    assert_nothing_extracted(tmp_path, out)


def test_decompression_bomb_is_refused_by_the_default_limits(tmp_path: Path) -> None:
    # 8 MB of zeros gzip to about 8 KB: a thousandfold expansion, where fastMRI's is under 2x.
    archive = tar_with(tmp_path / "bomb.tar.gz", {"multicoil_val/file1.h5": b"\0" * (8 * MB)})
    assert archive.stat().st_size < 64 << 10
    out = tmp_path / "out"
    with pytest.raises(
        ValueError, match=r"bomb\.tar\.gz: .*expand to 8388608 bytes, more than 20 times the archive"
    ):
        extract_archive(archive, out)
    assert_nothing_extracted(tmp_path, out)


def test_member_count_is_limited(tmp_path: Path) -> None:
    members = {f"multicoil_val/file{i:04d}.h5": b"x" for i in range(101)}
    archive = tar_with(tmp_path / "many.tar", members, mode="w")
    limits = smug.data.archives.ArchiveLimits(max_members=100)
    with pytest.raises(ValueError, match=r"many\.tar: more than 100 members"):
        extract_archive(archive, tmp_path / "out", limits=limits)
    assert_nothing_extracted(tmp_path, tmp_path / "out")
    del members["multicoil_val/file0100.h5"]
    tar_with(archive, members, mode="w")
    assert len(extract_archive(archive, tmp_path / "out", limits=limits)) == 100


class CountingName(str):
    """A member's base name that counts its equality comparisons (a list scan makes one per entry)."""

    comparisons = 0

    def __eq__(self, other):
        CountingName.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


class CountingPath(PurePosixPath):
    @property
    def name(self):
        return CountingName(super().name)


def test_duplicate_name_check_is_constant_time(tmp_path: Path, monkeypatch) -> None:
    count = 1000
    archive = tar_with(tmp_path / "many.tar", {f"d/file{i:05d}.h5": b"" for i in range(count)}, mode="w")
    monkeypatch.setattr(smug.data.archives, "PurePosixPath", CountingPath)
    monkeypatch.setattr(smug.data.archives.os, "fsync", lambda fd: None)  # a thousand fsyncs are slow
    CountingName.comparisons = 0
    assert len(extract_archive(archive, tmp_path / "out")) == count
    # A list scan compares each name with every earlier one: count**2 / 2, half a million here.
    assert CountingName.comparisons < 10 * count
    duplicate = tar_with(tmp_path / "dup.tar", {"a/file1.h5": b"1", "b/file1.h5": b"2"}, mode="w")
    with pytest.raises(ValueError, match=r"dup\.tar: two members are named file1\.h5"):
        extract_archive(duplicate, tmp_path / "out2")


def test_disk_full_during_extraction_names_archive_and_member(tmp_path: Path, monkeypatch) -> None:
    archive = make_archive(tmp_path / "knee_multicoil_val.tar.xz")
    out = tmp_path / "knee_multicoil_val"
    real_open = open

    class FullDisk(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_disk_open(path, mode="r", *args, **kwargs):
        # The first volume fits; the disk fills up while the second is written.
        if "w" in mode and Path(path).name == VOLUMES[1]:
            return FullDisk(path, "wb")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(smug.data.archives, "open", full_disk_open, raising=False)
    with pytest.raises(OSError) as caught:
        extract_archive(archive, out)
    message = str(caught.value)
    assert caught.value.errno == errno.ENOSPC
    assert "knee_multicoil_val.tar.xz" in message and f"multicoil_val/{VOLUMES[1]}" in message
    assert "disk is full" in message
    assert_nothing_extracted(tmp_path, out)
    monkeypatch.undo()
    assert len(extract_archive(archive, out)) == 2 and (out / ".complete").is_file()


# --- configuration and script -------------------------------------------------------------------


def test_library_limits_agree_with_config_yaml() -> None:
    limits = yaml.safe_load((REPO / "config/config.yaml").read_text())["fastmri"]["limits"]
    defaults = smug.data.archives.ArchiveLimits()
    assert limits == {
        "max_download_bytes": smug.data.download.MAX_DOWNLOAD_BYTES,
        "max_members": defaults.max_members,
        "max_member_bytes": defaults.max_member_bytes,
        "max_expansion": defaults.max_expansion,
    }
    assert download.__kwdefaults__["max_bytes"] == smug.data.download.MAX_DOWNLOAD_BYTES


def test_script_applies_the_configured_limits(tmp_path: Path, server, capsys) -> None:
    url, state = server
    state.body = make_archive(tmp_path / "served.tar.xz").read_bytes()
    hashes = tmp_path / "sha256.txt"
    hashes.write_text(f"{sha(state.body)}  knee_multicoil_val.tar.xz\n")
    args = [
        "--url", url, "--sha256-file", str(hashes), "--name", "knee_multicoil_val", "--no-progress",
        "--archive-dir", str(tmp_path / "archives"), "--out-dir", str(tmp_path / "out"), "--retries", "0",
    ]  # fmt: skip
    with pytest.raises(
        SystemExit, match=r"error: knee_multicoil_val\.tar\.xz: the server announces .*ceiling of 100 "
    ):
        fetch_fastmri.main([*args, "--max-download-bytes", "100"])
    with pytest.raises(SystemExit, match=r"error: .*knee_multicoil_val\.tar\.xz: more than 1 members"):
        fetch_fastmri.main([*args, "--max-members", "1"])
    assert not (tmp_path / "out" / ".complete").exists()
    fetch_fastmri.main([*args, "--expected-bytes", str(len(state.body))])
    assert "extracted 2 volumes" in capsys.readouterr().out
