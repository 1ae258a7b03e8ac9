"""Sans-I/O platform adapters: bytes and values in, values out."""
