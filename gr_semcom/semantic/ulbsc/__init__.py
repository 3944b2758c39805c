"""ULBSC (Low-Rate Semantic Communication with Codebook-based Conditional Generative Models)."""
