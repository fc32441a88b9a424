"""What every other part uses: atomic file writing, strict YAML/JSON reading, the scripts' command
lines and the run-time setup (device, threads, seeds, provenance)."""

from smug.utils.lazy import lazy_surface

# The public names, by the module that defines them; each module is imported on first use
# (smug.utils.lazy says why).
__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "cli": [
            "add_compute_arguments",
            "add_memory_arguments",
            "add_config_option",
            "add_espirit_options",
            "add_test_data_options",
            "argument_words",
            "config_value",
            "load_spec",
            "parse_args",
            "setup_logging",
        ],
        "io": [
            "UnsafeFileError",
            "atomic_dir",
            "atomic_path",
            "file_digest",
            "files_digest",
            "load_torch_file",
            "write_text_atomic",
        ],
        "runtime": [
            "dump_json",
            "epoch_seed",
            "git_commit",
            "limit_threads",
            "provenance",
            "select_device",
            "set_malloc_thresholds",
            "setup_compute",
            "tune_cpu_runtime",
            "use_deterministic_algorithms",
        ],
        "yaml_safety": [
            "MAX_ALIAS_VALUES",
            "UnsafeYAMLError",
            "load_config_file",
            "load_json_strict",
            "load_yaml_strict",
        ],
    },
)
