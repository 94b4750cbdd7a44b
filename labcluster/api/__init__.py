"""The Ray-style API on Dask: sessions, remote functions, objects and cluster state."""
