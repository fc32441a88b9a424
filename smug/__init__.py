"""SMUG: robust MRI reconstruction by smoothed unrolling, and the pipeline that reproduces it.

The library is grouped by role, after fastMRI's ``fastmri/`` and deepinv, each package's
``__init__`` its public surface; a package imports only the ones listed before it:

- :mod:`smug.utils`: files, the scripts' command lines, devices and seeds, strict YAML;
- :mod:`smug.study`: the registry (methods, families, attacks, claims, ablations), plain data;
- :mod:`smug.mri`: FFTs, SENSE operators, data consistency, masks, wavelets;
- :mod:`smug.data`: fastMRI files, datasets and batches, splits, sensitivity maps, synthetic data;
- :mod:`smug.models`: the networks, classical CS, the untrained network, building and loading;
- :mod:`smug.attacks`: PGD, random noise, the papers' protocols, attack files;
- :mod:`smug.evaluation`: metrics, scoring, robustness conditions, statistics, claim verdicts;
- :mod:`smug.training` and :mod:`smug.reporting` (siblings): training; tables and figures.

Complex images are complex tensors; real/imaginary channels appear only at the network boundary
(:mod:`smug.mri.transforms`). ``docs/architecture.md`` says where to add an attack, a backbone, a
data source or a claim.
"""

__version__ = "0.1.0"
