"""Diagnostics: the GPU probe (pynvml) now; lineage and timeline records later."""
