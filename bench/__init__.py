"""Side-by-side benchmark of serve against its peers; see bench/README.md."""
