"""What runs at an edge site: the site plugin, its datasets, GPUs and runners."""
