"""The data: fastMRI's HDF5 files (reading, checking, downloading), the slice datasets and batches,
the splits, coil sensitivity maps and the synthetic dataset in fastMRI's format."""
