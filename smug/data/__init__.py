"""The data: fastMRI's HDF5 files (reading, checking, downloading), the slice datasets and batches,
the splits, coil sensitivity maps and the synthetic dataset in fastMRI's format."""

from smug.utils.lazy import lazy_surface

# The public names, by the module that defines them; each module is imported on first use
# (smug.utils.lazy says why).
__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "archives": [
            "ArchiveLimits",
            "DownloadError",
            "extract_archive",
            "extracted_files",
            "read_sha256_file",
            "sha256_of",
        ],
        "coil_sensitivities": ["birdcage_sensitivities", "normalize_sensitivities"],
        "datasets": [
            "Batch",
            "SliceDataset",
            "central_slices",
            "collate",
            "make_dataset",
            "preprocess_slice",
            "select_slices",
        ],
        "fastmri_io": [
            "FILE_MASK_KEY",
            "RECON_KEYS",
            "SENS_MAPS_KEY",
            "VolumeInfo",
            "VolumeLimits",
            "anatomy_of",
            "check_recon_fits",
            "inspect_volume",
            "load_slice",
            "open_volume",
            "read_file_mask",
            "read_slice",
        ],
        "hdf5_safety": ["FastMRIFormatError", "open_hdf5"],
        "ismrmrd": ["EncodingInfo", "parse_ismrmrd_header", "zero_kspace_padding"],
        "phantoms": ["PHANTOMS", "knee_phantom", "sample_knee_params"],
        "sens_maps": [
            "ESTIMATOR",
            "calibration_region",
            "espirit_maps",
            "estimate_volume_maps",
            "maps_file_matches",
            "read_sens_maps",
            "write_sens_maps",
        ],
        "splits": [
            "add_volume_limits_argument",
            "index_volumes",
            "select_volumes",
            "validate_volume",
            "volume_limits_from",
            "write_volume_list",
        ],
        "synthetic": [
            "CHALLENGES",
            "SPLITS",
            "SyntheticVolume",
            "VolumeSpec",
            "fft2c_np",
            "ifft2c_np",
            "ismrmrd_header",
            "sens_map_path",
            "synthesize_volume",
            "volume_paths",
            "volume_plan",
            "write_synthetic_volume",
        ],
    },
)
