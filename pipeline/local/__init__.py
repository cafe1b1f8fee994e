"""A local run: its search streamed once by the launcher and cut into slices of bounded size
(``search_plan``), each slice one Beam job, with one audit over all of them (``local_slices``).
"""
