"""Stage test: score the fine-tuned model once on the held-out test split (never used for a choice)."""

from ptft.evaluation import score_stage

score_stage("test", "test", "reports/test")
