"""The Zarr cache (DESIGN.md section 3): images, labels, annotations and saliency per data set."""
