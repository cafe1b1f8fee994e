"""Beam's FnApiRunner, with the job's worker plugins handed to its worker processes.

The FnApiRunner gives its SDK worker processes no pipeline options, so they would not import the options'
``--beam_plugins`` (the pipeline's worker plugin, ``pipeline.runtime.worker_start``: the data-plane buffer sizes). A
runner's provisioning service hands a job's options to its workers; here the same ``ProvisionInfo`` is built
by hand, with only the plugins in it. Checked against apache-beam ``CHECKED_BEAM``;
``tests/pipeline/test_data_plane_buffers.py`` runs real local workers and fails when they no longer get the
plugin.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo

CHECKED_BEAM = ("2.77.0", "2.78.0")


def fn_api_runner(options: PipelineOptions | None = None) -> FnApiRunner:
    """A FnApiRunner whose worker processes import ``options``' ``--beam_plugins`` when they start."""
    info = beam_provision_api_pb2.ProvisionInfo(retrieval_token="unused-retrieval-token")
    plugins = options.view_as(SetupOptions).beam_plugins if options is not None else None
    if plugins:
        info.pipeline_options.update({"beam_plugins": list(plugins)})
    return FnApiRunner(provision_info=ExtendedProvisionInfo(info))
