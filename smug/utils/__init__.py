"""What every other part uses: atomic file writing, strict YAML/JSON reading, the scripts' command
lines and the run-time setup (device, threads, seeds, provenance)."""
