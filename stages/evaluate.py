"""Stage evaluate: score the fine-tuned model on the validation split (used for every choice)."""

from ptft.evaluation import score_stage

score_stage("evaluate", "validation", "reports/evaluate")
