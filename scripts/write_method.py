#!/usr/bin/env python3
"""Write the model.pt of a reconstruction method that is not trained: the zero-filled image, or the
untrained network (fitted per slice at evaluation time), so every method is evaluated alike.

Example:
  python scripts/write_method.py --kind untrained \
      --settings '{"num_iters": 200, "lr": 0.008, "channels": 32, "num_layers": 4}' \
      --out results/models/untrained/model.pt
"""

import argparse
import sys

import torch

from smug.utils import atomic_path, load_spec, parse_args, provenance, setup_compute
from smug.models import UntrainedNetwork


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", required=True, choices=["zero_filled", "untrained"])
    parser.add_argument(
        "--settings", help="untrained: the network's settings (inline JSON or a JSON/YAML file)"
    )
    parser.add_argument("--out", required=True, help="output model.pt")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parse_args(parser, argv)
    try:
        setup_compute(args.threads)
        if args.kind == "untrained":
            # Building the network validates the settings before anything is written.
            if args.settings is None:
                raise ValueError("--kind untrained needs --settings (the untrained section's settings)")
            record = UntrainedNetwork(**load_spec(args.settings)).to_record()
        else:
            record = {"kind": "zero_filled"}
        record["provenance"] = provenance()
        with atomic_path(args.out) as tmp:
            torch.save(record, tmp)
    except (ValueError, TypeError, OSError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
