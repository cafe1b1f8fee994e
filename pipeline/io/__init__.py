"""Bytes and tables through Beam's ``FileSystems`` (local paths and ``gs://`` alike): write-once files
(``storage``), Parquet tables (``tables``), partitioned Parquet datasets written by the workers that hold the
rows (``partitioned``) and the clip store, where encoded clips are written once and passed on by reference
(``clip_store``).
"""
