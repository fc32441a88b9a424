"""SMUG: robust MRI reconstruction by smoothed unrolling, and the pipeline that reproduces it.

The library follows fastMRI's layout: small modules that each do one thing, plain functions over
tensors. Complex images are complex tensors; real/imaginary channels appear only at the network
boundary (:mod:`smug.mri.transforms`).
"""

__version__ = "0.1.0"
