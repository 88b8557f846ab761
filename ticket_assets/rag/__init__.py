"""Knowledge base: articles and chunking (kb), the vector index (index), answer drafts (draft)."""
