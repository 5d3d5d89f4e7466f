"""The pipeline: what the DVC stages run. Nothing here imports the tools around it (ptft.cli, predict,
report, trace), so a change to a tool reruns no stage.

Importing it pins the CPU kernels to ``runtime.kernels`` of the working directory's params.yaml
(:mod:`ptft.pipeline.kernels`): every stage script imports the pipeline before torch, and torch's libraries read
their kernel settings once, when they load.
"""

from ptft.pipeline.kernels import pin_from_params_file

pin_from_params_file()
