"""Embeddings: open_clip models, the batch embedding job, LanceDB tables and search."""
