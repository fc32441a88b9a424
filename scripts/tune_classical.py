#!/usr/bin/env python3
"""Tune the weight of a classical compressed-sensing baseline (l1-wavelet or TV) on validation slices.

Reconstructs the validation slices with every candidate ``lam``, keeps the one with the best mean
PSNR (fastMRI PSNR of magnitudes, per slice), and writes MODEL (a ``model.pt`` record that
``smug.models.classical.from_record`` turns back into a model) and TABLE (CSV: lam, psnr, ssim), both
atomically.

Example:
  python scripts/tune_classical.py --method l1_wavelet --lams 1e-4 3e-4 1e-3 3e-3 --num-iters 50 \
      --val resources/synthetic/multicoil_val/file1*.h5 --sens-maps resources/synthetic/sens_maps \
      --mask resources/masks/4x.npz --val-slices 8 \
      --out results/models/cs_l1_wavelet/model.pt --table results/models/cs_l1_wavelet/tuning.csv
"""

import argparse
import csv
import io
import logging
import sys

import torch
from torch.utils.data import DataLoader

from smug.models import METHODS, TV_SOLVERS, CompressedSensing, check_solver_options, to_record
from smug.training import tune_regularization
from smug.data import SliceDataset, select_slices, collate
from smug.utils import add_compute_arguments, add_config_option, atomic_path, parse_args, provenance
from smug.utils import select_device, setup_compute, setup_logging, write_text_atomic
from smug.mri import load_mask, WAVELETS

LOG = logging.getLogger("smug")


def table_csv(table: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["lam", "psnr", "ssim"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def solver_options(args: argparse.Namespace) -> dict:
    """The options of the chosen method that were given on the command line, completed with defaults."""
    given = (
        {"wavelet": args.wavelet, "levels": args.levels}
        if args.method == "l1_wavelet"
        else {"solver": args.solver, "inner_iters": args.inner_iters, "pdhg_step": args.pdhg_step}
    )
    return check_solver_options(args.method, {k: v for k, v in given.items() if v is not None})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", required=True, choices=METHODS, help="classical method")
    parser.add_argument(
        "--lams", nargs="+", type=float, required=True, help="candidate regularisation weights"
    )
    add_config_option(parser, "--num-iters", "classical.num_iters", type=int, help="solver iterations")
    parser.add_argument("--val", nargs="+", required=True, help="validation volumes (fastMRI HDF5), or @LIST")
    parser.add_argument(
        "--sens-maps",
        nargs="+",
        help="sensitivity-map files, or folders of them (multicoil data), searched in order",
    )
    parser.add_argument("--mask", required=True, help="column mask .npz from scripts/make_masks.py")
    add_config_option(parser, "--val-slices", "classical.val_slices", type=int, help="validation slices used")
    parser.add_argument("--batch-size", type=int, default=4, help="slices reconstructed at once (default 4)")
    add_config_option(parser, "--wavelet", "classical.wavelet", choices=WAVELETS, help="l1_wavelet: wavelet")
    add_config_option(
        parser, "--levels", "classical.levels", type=int, help="l1_wavelet: decomposition levels"
    )
    add_config_option(parser, "--solver", "classical.tv_solver", choices=TV_SOLVERS, help="tv: solver")
    parser.add_argument("--inner-iters", type=int, help="tv with fista: TV-prox iterations (default 10)")
    parser.add_argument("--pdhg-step", type=float, help="tv with pdhg: primal step (default 3)")
    parser.add_argument("--out", required=True, help="output model.pt")
    parser.add_argument("--table", required=True, help="output tuning CSV (lam, psnr, ssim)")
    add_compute_arguments(parser)
    args = parse_args(parser, argv)

    setup_logging()
    try:
        setup_compute(args.threads)
        if args.val_slices < 1 or args.batch_size < 1:
            raise ValueError(
                f"--val-slices and --batch-size must be positive, got {args.val_slices}, {args.batch_size}"
            )
        options = solver_options(args)
        # Bad weights fail here, before any data is read.
        for lam in args.lams:
            CompressedSensing(args.method, lam, args.num_iters, **options)
        device = select_device(args.device)
        mask = load_mask(args.mask)
        dataset = SliceDataset(select_slices(args.val, args.val_slices), mask=mask, sens_dir=args.sens_maps)
        batches = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, collate_fn=collate)
        best_lam, table = tune_regularization(
            args.method, args.lams, batches, num_iters=args.num_iters, device=device, **options
        )
        for row in table:
            LOG.info("lam %g: PSNR %.3f SSIM %.4f", row["lam"], row["psnr"], row["ssim"])
        LOG.info("best lam %g", best_lam)
        model = CompressedSensing(args.method, best_lam, args.num_iters, **options)
        record = to_record(model, tuning=table, provenance=provenance())
        with atomic_path(args.out) as tmp:
            torch.save(record, tmp)
        write_text_atomic(args.table, table_csv(table))
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
