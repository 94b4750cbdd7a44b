"""Diagnostics: the GPU probe (pynvml), and pictures of task records (timeline, lineage) drawn from rows."""
