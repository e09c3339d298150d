"""Provenance: what generators embed in their outputs, content credentials (C2PA), perceptual
hashes, generation lineage and model recall (issue 14)."""
