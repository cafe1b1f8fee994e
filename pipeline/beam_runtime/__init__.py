"""Where the pipeline reaches into Apache Beam's internals, and nowhere else.

Each module names the Beam versions it was checked against and has a test that fails when Beam's names
change, so an upgrade says what it broke instead of silently changing how a run behaves.
"""
