"""The command line as a contract: flags declared once on the config fields they fill (``options``), their
argparse types (``cli_types``), the flags Beam itself knows (``beam_flags``), and everything checked before any
work starts: the inputs and outputs (``preflight``), the inputs an output was made from (``run_inputs``), the
one job writing into an output (``lease``) and the worker image's versions (``worker_image``).
"""
