"""fastMRI download and extraction against a real HTTP server on the loopback interface."""

from __future__ import annotations

import hashlib
import importlib.util
import http.server
import io
import os
import re
import subprocess
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

import smug.data.archives
from smug.data import DownloadError, extract_archive, inspect_volume, ismrmrd_header, read_sha256_file
from smug.data import sha256_of
from smug.data.download import download

REPO = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("fetch_fastmri", REPO / "scripts" / "fetch_fastmri.py")
fetch_fastmri = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fetch_fastmri)

VOLUMES = ("file1000001.h5", "file1000002.h5")


@dataclass
class ServerState:
    """What the test server serves, how it misbehaves, and the Range header of every request."""

    body: bytes = b""
    statuses: list[int] = field(default_factory=list)  # answered to the first requests, one each
    drop_after: int | None = None  # first request: send this many body bytes, then hang up
    ignore_range: bool = False
    requests: list[str | None] = field(default_factory=list)


class RangeHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        state: ServerState = self.server.state
        state.requests.append(self.headers.get("Range"))
        if state.statuses:
            self.send_error(state.statuses.pop(0))
            return
        body, start = state.body, 0
        requested = self.headers.get("Range")
        if requested and not state.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if state.drop_after is not None and len(state.requests) == 1:
            self.wfile.write(body[start : start + state.drop_after])
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.state = ServerState()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/knee_multicoil_val.tar.xz?Signature=secret123"
    yield url, httpd.state
    httpd.shutdown()
    httpd.server_close()


def write_volume(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    kspace = (rng.standard_normal((2, 4, 16, 12)) + 1j * rng.standard_normal((2, 4, 16, 12))).astype(
        np.complex64
    )
    with h5py.File(path, "w") as hf:
        hf.create_dataset("kspace", data=kspace)
        hf.create_dataset("reconstruction_rss", data=rng.random((2, 8, 8), dtype=np.float32))
        hf.create_dataset(
            "ismrmrd_header",
            data=ismrmrd_header(enc_size=(16, 12, 1), recon_size=(8, 8, 1), center=6, maximum=11),
        )
        hf.attrs.update({"acquisition": "CORPD_FBK", "max": 1.0, "norm": 2.0, "patient_id": f"p{seed}"})


def make_archive(path: Path, extra: dict[str, bytes] | None = None, mode: str = "w:xz") -> Path:
    """A fastMRI-like archive: ``multicoil_val/file100000{1,2}.h5`` plus optional raw members."""
    volumes = path.parent / "volumes"
    volumes.mkdir(exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for seed, name in enumerate(VOLUMES):
            write_volume(volumes / name, seed)
            tar.add(volumes / name, arcname=f"multicoil_val/{name}")
        for arcname, data in (extra or {}).items():
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def archive_bytes(tmp_path: Path) -> bytes:
    return make_archive(tmp_path / "served.tar.xz").read_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(url: str, dest: Path, **kwargs) -> Path:
    return download(url, dest, backoff=0, progress=False, **kwargs)


# --- download -----------------------------------------------------------------------------------


def test_full_download(tmp_path: Path, server, archive_bytes: bytes, capsys) -> None:
    url, state = server
    state.body = archive_bytes
    dest = tmp_path / "dl" / "knee_multicoil_val.tar.xz"
    got = download(url, dest, expected_sha256=sha(archive_bytes).upper(), chunk_size=1000, progress=True)
    assert got == dest and "knee_multicoil_val.tar.xz" in capsys.readouterr().err  # the progress bar
    assert dest.read_bytes() == archive_bytes and sha256_of(dest) == sha(archive_bytes)
    assert not dest.with_name(dest.name + ".part").exists()
    assert state.requests == [None]
    # Present with the right digest: no second request.
    fetch(url, dest, expected_sha256=sha(archive_bytes))
    assert state.requests == [None]


def test_interrupted_download_resumes_in_a_second_call(tmp_path: Path, server, archive_bytes: bytes) -> None:
    url, state = server
    state.body, state.drop_after = archive_bytes, 5000
    dest = tmp_path / "knee_multicoil_val.tar.xz"
    part = tmp_path / "knee_multicoil_val.tar.xz.part"
    with pytest.raises(DownloadError, match="run again to resume") as info:
        fetch(url, dest, expected_sha256=sha(archive_bytes), retries=0)
    assert "secret123" not in str(info.value)
    assert not dest.exists() and part.read_bytes() == archive_bytes[:5000]
    fetch(url, dest, expected_sha256=sha(archive_bytes), retries=0)
    assert dest.read_bytes() == archive_bytes and not part.exists()
    assert state.requests == [None, "bytes=5000-"]


def test_retry_loop_resumes_after_drop_and_5xx(tmp_path: Path, server, archive_bytes: bytes) -> None:
    url, state = server
    state.body, state.drop_after = archive_bytes, 3000
    dest = tmp_path / "knee_multicoil_val.tar.xz"
    fetch(url, dest, expected_sha256=sha(archive_bytes), retries=1)
    assert dest.read_bytes() == archive_bytes
    assert state.requests == [None, "bytes=3000-"]

    state.requests.clear()
    state.statuses = [503, 503]
    dest2 = tmp_path / "again.tar.xz"
    with pytest.raises(DownloadError, match="503"):
        fetch(url, dest2, retries=1)
    assert len(state.requests) == 2
    state.statuses = [503]
    fetch(url, dest2, retries=1)
    assert dest2.read_bytes() == archive_bytes


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, server, archive_bytes: bytes) -> None:
    url, state = server
    state.body, state.ignore_range = archive_bytes, True
    dest = tmp_path / "knee_multicoil_val.tar.xz"
    dest.with_name(dest.name + ".part").write_bytes(b"x" * 700)  # wrong bytes a resume would keep
    fetch(url, dest, expected_sha256=sha(archive_bytes))
    assert dest.read_bytes() == archive_bytes
    assert state.requests == ["bytes=700-"]


def test_complete_part_is_verified_after_416(tmp_path: Path, server, archive_bytes: bytes) -> None:
    url, state = server
    state.body = archive_bytes
    dest = tmp_path / "knee_multicoil_val.tar.xz"
    dest.with_name(dest.name + ".part").write_bytes(archive_bytes)
    fetch(url, dest, expected_sha256=sha(archive_bytes))
    assert dest.read_bytes() == archive_bytes
    assert state.requests == [f"bytes={len(archive_bytes)}-"]


@pytest.mark.parametrize("user_file", [False, True])
def test_corrupt_download_is_rejected(tmp_path: Path, server, archive_bytes: bytes, user_file: bool) -> None:
    url, state = server
    corrupt = bytearray(archive_bytes)
    corrupt[len(corrupt) // 2] ^= 0xFF
    state.body = bytes(corrupt)
    dest = tmp_path / "knee_multicoil_val.tar.xz"
    if user_file:
        dest.write_bytes(b"the user's own file")
    expected = sha(archive_bytes)
    with pytest.raises(DownloadError) as info:
        fetch(url, dest, expected_sha256=expected)
    message = str(info.value)
    assert "knee_multicoil_val.tar.xz" in message and expected in message and sha(bytes(corrupt)) in message
    assert not dest.with_name(dest.name + ".part").exists()
    if user_file:
        assert dest.read_bytes() == b"the user's own file"
    else:
        assert not dest.exists()


def test_403_asks_for_new_links_without_retrying(tmp_path: Path, server) -> None:
    url, state = server
    state.statuses = [403, 403]
    with pytest.raises(DownloadError, match="request new links") as info:
        fetch(url, tmp_path / "knee_multicoil_val.tar.xz", retries=3)
    assert "fastmri.urls" in str(info.value) and "secret123" not in str(info.value)
    assert len(state.requests) == 1


def test_404_and_bad_arguments(tmp_path: Path, server) -> None:
    url, state = server
    state.statuses = [404]
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(url, tmp_path / "a.tar.xz", retries=3)
    assert len(state.requests) == 1
    with pytest.raises(ValueError, match="http"):
        fetch("ftp://example.org/a.tar.xz", tmp_path / "a.tar.xz")
    with pytest.raises(ValueError, match="64 hex"):
        fetch(url, tmp_path / "a.tar.xz", expected_sha256="abc")


# --- SHA256 files -------------------------------------------------------------------------------


def test_read_sha256_file_formats(tmp_path: Path) -> None:
    a, b, c = "A" * 64, "b" * 64, "0123456789abcdef" * 4
    path = tmp_path / "SHA256SUMS"
    path.write_text(
        f"# fastMRI archives\n\n{a}  knee_singlecoil_val.tar.xz\n{b} *knee_multicoil_val.tar.xz\r\n"
        f"SHA256 (./brain/brain_multicoil_val.tar.xz) = {c}\n"
    )
    assert read_sha256_file(path) == {
        "knee_singlecoil_val.tar.xz": "a" * 64,
        "knee_multicoil_val.tar.xz": b,
        "brain_multicoil_val.tar.xz": c,
    }


def test_read_sha256_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "hashes.txt"
    path.write_text(f"# ok\n{'a' * 64}  x.tar.xz\nknee.tar.xz {'a' * 64}\n")
    with pytest.raises(ValueError, match=r"hashes\.txt, line 3"):
        read_sha256_file(path)
    path.write_text(f"{'a' * 64}  x.tar.xz\n{'b' * 64}  x.tar.xz\n")
    with pytest.raises(ValueError, match="line 2: x.tar.xz has two different digests"):
        read_sha256_file(path)
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no SHA256 entry"):
        read_sha256_file(path)


# --- extraction ---------------------------------------------------------------------------------


def test_extract_flattens_and_writes_marker(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "knee_multicoil_val.tar.xz", extra={"multicoil_val/README.txt": b"hi"})
    out = tmp_path / "knee_multicoil_val"
    files = extract_archive(archive, out)
    assert files == [out / name for name in VOLUMES]
    assert sorted(p.name for p in out.iterdir()) == [".complete", *VOLUMES]
    assert (out / ".complete").read_text().split() == list(VOLUMES)
    assert inspect_volume(files[0]).kspace_shape == (2, 4, 16, 12)
    assert not [p for p in tmp_path.iterdir() if "extracting" in p.name]
    # Marker present: the archive is not read again, even when gone.
    archive.unlink()
    assert extract_archive(archive, out) == files


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_extract_plain_and_gzip_tar(tmp_path: Path, mode: str) -> None:
    archive = make_archive(tmp_path / "a.tar", mode=mode)
    assert [p.name for p in extract_archive(archive, tmp_path / "out")] == list(VOLUMES)


def test_interrupted_extraction_leaves_no_marker(tmp_path: Path, monkeypatch) -> None:
    data = make_archive(tmp_path / "full.tar.xz").read_bytes()
    truncated = tmp_path / "truncated.tar.xz"
    truncated.write_bytes(data[: len(data) * 3 // 4])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="truncated.tar.xz"):
        extract_archive(truncated, out)
    assert list(out.iterdir()) == []

    # Killed while moving files into place: the marker must still be missing.
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(smug.data.archives.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        extract_archive(tmp_path / "full.tar.xz", out)
    assert not (out / ".complete").exists()
    monkeypatch.undo()
    assert len(extract_archive(tmp_path / "full.tar.xz", out)) == 2 and (out / ".complete").exists()


@pytest.mark.parametrize("evil", ["../evil.h5", "/tmp/evil.h5", "multicoil_val/../../evil.h5"])
def test_extract_refuses_unsafe_paths(tmp_path: Path, evil: str) -> None:
    archive = make_archive(tmp_path / "bad.tar.xz", extra={evil: b"x"})
    out = tmp_path / "sub" / "out"
    with pytest.raises(ValueError, match=f"bad.tar.xz: unsafe member '{re.escape(evil)}'"):
        extract_archive(archive, out)
    assert not (out / ".complete").exists() and not list(tmp_path.rglob("evil.h5"))


def test_extract_refuses_links_and_empty_archives(tmp_path: Path) -> None:
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("multicoil_val/file1.h5")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(ValueError, match="link"):
        extract_archive(archive, tmp_path / "out")
    empty = tmp_path / "empty.tar.xz"
    with tarfile.open(empty, "w:xz") as tar:
        info = tarfile.TarInfo("readme.txt")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match="empty.tar.xz: the archive holds no .h5"):
        extract_archive(empty, tmp_path / "out")


# --- script -------------------------------------------------------------------------------------


def test_script_end_to_end(tmp_path: Path, server, archive_bytes: bytes, capsys) -> None:
    url, state = server
    state.body = archive_bytes
    hashes = tmp_path / "sha256.txt"
    hashes.write_text(f"{sha(archive_bytes)}  knee_multicoil_val.tar.xz\n")
    args = [
        "--url",
        url,
        "--sha256-file",
        str(hashes),
        "--name",
        "knee_multicoil_val",
        "--no-progress",
        "--archive-dir",
        str(tmp_path / "archives"),
        "--out-dir",
        str(tmp_path / "knee_multicoil_val"),
    ]
    fetch_fastmri.main([*args, "--no-keep-archive", "--retries", "0"])
    printed = capsys.readouterr().out
    assert "SHA256 verified" in printed and "extracted 2 volumes" in printed and "deleted" in printed
    assert sorted(p.name for p in (tmp_path / "knee_multicoil_val").glob("*.h5")) == list(VOLUMES)
    assert not (tmp_path / "archives" / "knee_multicoil_val.tar.xz").exists()
    fetch_fastmri.main(args)  # complete: no download although the archive is gone
    assert "nothing to do" in capsys.readouterr().out and len(state.requests) == 1

    with pytest.raises(SystemExit, match=r"error: .*sha256\.txt: no SHA256 entry for knee_multicoil_train"):
        fetch_fastmri.main([*args[:5], "knee_multicoil_train", *args[6:]])
    state.statuses = [403]
    with pytest.raises(SystemExit, match="error: .*request new links"):
        fetch_fastmri.main([*args[:-1], str(tmp_path / "other")])


def test_script_help() -> None:
    result = subprocess.run(
        [str(REPO / ".venv/bin/python"), "scripts/fetch_fastmri.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--sha256-file" in result.stdout and "Example:" in result.stdout
