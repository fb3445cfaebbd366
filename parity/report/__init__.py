"""Reports: markdown (with plots) and JSON renderings of a Comparison, written atomically."""
