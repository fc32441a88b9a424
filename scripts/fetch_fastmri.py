#!/usr/bin/env python3
r"""Download one fastMRI archive from its signed link, verify its SHA256, and extract its volumes.

Downloads ARCHIVE_DIR/NAME.tar.xz (resuming an interrupted download), checks it against the entry
for NAME.tar.xz in the SHA256 file fastMRI provides (sha256sum or BSD format), and extracts every
.h5 volume directly into OUT_DIR, writing OUT_DIR/.complete last. A run whose OUT_DIR is complete
already does nothing, even when the archive has been deleted since. Signed links expire: on
HTTP 403 request new ones on the NYU fastMRI site and put them in `fastmri.urls` of the config.
The download is bounded by --expected-bytes when the archive's size is known, else by
--max-download-bytes, and the extraction by --max-members, --max-member-bytes and --max-expansion
(the pipeline's fastmri.limits).

Example:
  python scripts/fetch_fastmri.py --url "$KNEE_MULTICOIL_VAL_URL" --sha256-file fastmri_sha256.txt \
      --name knee_multicoil_val --archive-dir resources/fastmri/archives \
      --out-dir resources/fastmri/knee_multicoil_val --delete-archive
"""

import argparse
import sys
from pathlib import Path

from smug.data import ArchiveLimits, DownloadError, extract_archive, extracted_files, read_sha256_file
from smug.data.download import download
from smug.utils import add_config_option, parse_args, setup_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="signed download URL of the archive")
    parser.add_argument("--sha256-file", required=True, help="file of SHA256 hashes of the fastMRI archives")
    parser.add_argument("--name", required=True, help="archive name without .tar.xz, e.g. knee_multicoil_val")
    parser.add_argument("--archive-dir", required=True, help="folder for the downloaded archive")
    parser.add_argument("--out-dir", required=True, help="folder the .h5 volumes are extracted into")
    add_config_option(
        parser,
        "--keep-archive",
        "fastmri.keep_archives",
        action=argparse.BooleanOptionalAction,
        help="keep the archive after extraction (--no-keep-archive deletes it once its volumes are extracted)",
    )
    parser.add_argument("--retries", type=int, default=5, help="retries without progress before giving up")
    parser.add_argument("--timeout", type=float, default=60, help="socket timeout in seconds")
    parser.add_argument("--marker-name", default=".complete", help="marker file written last into OUT_DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--expected-bytes", type=int, help="the archive's size in bytes, where known")
    add_config_option(
        parser,
        "--max-download-bytes",
        "fastmri.limits.max_download_bytes",
        type=int,
        help="refuse or stop a download of an unknown size past this many bytes",
    )
    add_config_option(
        parser, "--max-members", "fastmri.limits.max_members", type=int, help="most members in the archive"
    )
    add_config_option(
        parser,
        "--max-member-bytes",
        "fastmri.limits.max_member_bytes",
        type=int,
        help="largest member, in bytes",
    )
    add_config_option(
        parser,
        "--max-expansion",
        "fastmri.limits.max_expansion",
        type=float,
        help="the members' total size at most this multiple of the archive's",
    )
    args = parse_args(parser, argv)

    setup_logging()
    try:
        fetch(args)
    except (DownloadError, ValueError, OSError) as exc:
        sys.exit(f"error: {exc}")


def fetch(args: argparse.Namespace) -> None:
    archive_name = f"{args.name}.tar.xz"
    # The hash entry is looked up even when there is nothing to do, so a bad config fails every time.
    digests = read_sha256_file(args.sha256_file)
    if archive_name not in digests:
        raise ValueError(f"{args.sha256_file}: no SHA256 entry for {archive_name}")
    out_dir = Path(args.out_dir)
    done = extracted_files(out_dir, marker_name=args.marker_name)
    if done is not None:
        print(f"{out_dir} already holds the {len(done)} volumes of {archive_name}; nothing to do")
        return

    archive = Path(args.archive_dir) / archive_name
    download(
        args.url,
        archive,
        expected_sha256=digests[archive_name],
        retries=args.retries,
        timeout=args.timeout,
        progress=not args.no_progress,
        expected_size=args.expected_bytes,
        max_bytes=args.max_download_bytes,
    )
    print(f"{archive}: downloaded, SHA256 verified")
    limits = ArchiveLimits(args.max_members, args.max_member_bytes, args.max_expansion)
    files = extract_archive(archive, out_dir, marker_name=args.marker_name, limits=limits)
    print(f"extracted {len(files)} volumes into {out_dir}")
    if not args.keep_archive:
        archive.unlink()
        print(f"deleted {archive}")


if __name__ == "__main__":
    main()
