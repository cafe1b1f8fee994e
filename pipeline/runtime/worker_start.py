"""Imported by every SDK worker process at its start, before its first bundle: Beam's ``--beam_plugins``,
which ``job.local_options`` sets for local runs and Dataflow jobs alike. It applies the worker settings Beam
has no pipeline option for (``data_plane_buffers``) and logs one line saying what it set (INFO), or that it
could not (WARNING). Importing it changes this process's Beam: the launcher does not import it.
``pipeline run --no-worker-plugin`` leaves it out of a job."""

from pipeline.beam_runtime import data_plane_buffers

data_plane_buffers.apply()
