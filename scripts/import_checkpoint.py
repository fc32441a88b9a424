#!/usr/bin/env python3
"""Turn fastMRI's published U-Net or E2E-VarNet weights into this pipeline's model.pt, so the
checkpoint is evaluated, attacked and health-checked like every other method.

The checkpoint (a fastMRI state dict, or a Lightning checkpoint holding one) is read without running
code and loaded with strict key and shape matching (smug.models.load_fastmri_checkpoint); the record
keeps the architecture, the sizes, the weights under this project's names and the file's digest.

Example:
  python scripts/import_checkpoint.py --checkpoint knee_leaderboard_state_dict.pt \
      --architecture varnet --out results/models/fastmri_varnet/model.pt
"""

import argparse
import sys

import torch

from smug.utils import atomic_path, file_digest, load_spec, parse_args, provenance, setup_compute


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", required=True, help="fastMRI's weights (state dict or Lightning checkpoint)"
    )
    parser.add_argument("--architecture", required=True, choices=["unet", "varnet"])
    parser.add_argument(
        "--sizes",
        type=load_spec,
        default={},
        help="sizes differing from fastMRI's published ones (inline JSON or a JSON/YAML file)",
    )
    parser.add_argument("--out", required=True, help="output model.pt")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parse_args(parser, argv)
    try:
        setup_compute(args.threads)
        from smug.models import load_fastmri_checkpoint

        model = load_fastmri_checkpoint(args.checkpoint, args.architecture, **args.sizes)
        record = {
            "kind": "fastmri",
            "architecture": args.architecture,
            "sizes": dict(args.sizes),
            "state_dict": model.state_dict(),
            "checkpoint_digest": file_digest(args.checkpoint),
            "provenance": provenance(),
        }
        with atomic_path(args.out) as tmp:
            torch.save(record, tmp)
    except (ValueError, TypeError, OSError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
