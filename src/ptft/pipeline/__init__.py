"""The pipeline: what the DVC stages run. Nothing here imports the tools around it (ptft.cli, predict,
report, trace), so a change to a tool reruns no stage."""
