"""MRI physics over tensors: centred FFTs, the multicoil SENSE operators, data consistency,
sampling masks, wavelets, coil combination and the k-space consistency losses; and
:class:`MRIPhysics`, the operator object every reconstruction model is given (``model(y, physics)``)."""

from smug.utils.lazy import lazy_surface

# The public names, by the module that defines them; each module is imported on first use
# (smug.utils.lazy says why).
__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "coil_combine": ["rss", "sens_combine", "sens_expand"],
        "consistency": ["kspace_consistency_loss", "split_mask"],
        "data_consistency": ["conjugate_gradient"],
        "fftc": ["fft2c", "ifft2c"],
        "mask_functions": ["EquiSpacedMaskFunc", "MagicMaskFunc", "MaskFunc", "RandomMaskFunc"],
        "masks": [
            "MASK_TYPES",
            "VariableDensityMaskFunc",
            "apply_mask",
            "column_mask",
            "create_mask_for_mask_type",
            "load_mask",
            "save_mask",
            "variable_density_mask",
        ],
        "operators": [
            "adjoint_operator",
            "apply_column_mask",
            "broadcast_mask",
            "forward_operator",
            "normal_operator",
            "normal_operator_fn",
        ],
        "physics": ["MRIPhysics"],
        "transforms": [
            "center_crop",
            "center_crop_or_pad",
            "channels_to_complex",
            "clamp_complex",
            "complex_to_channels",
        ],
        "wavelets": ["WAVELETS", "analysis_matrix", "dwt2", "idwt2", "wavelet_filters"],
    },
)
