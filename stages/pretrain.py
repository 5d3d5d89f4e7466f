"""Stage pretrain: self-supervised masked-LM pre-training on the train split's text (labels unused)."""

import shutil
from pathlib import Path

from transformers import AutoTokenizer

from ptft.artifacts import atomic_dir
from ptft.data import read_split
from ptft.modeling import build_config, masked_lm
from ptft.params import load_params
from ptft.runtime import setup_runtime
from ptft.training import open_live, pretrain_mlm

params = load_params()
pretrain = params["pretrain"]
setup_runtime(params["seed"], params["runtime"]["threads"])

tokenizer = AutoTokenizer.from_pretrained("data/tokenizer")
model = masked_lm(build_config(params["model"], tokenizer))
train = list(read_split(Path("data/prepared"), "train")["text"])
validation = list(read_split(Path("data/prepared"), "validation")["text"])

live = open_live("reports/pretrain")
result = pretrain_mlm(model, tokenizer, train, validation, pretrain, params["seed"], live,
                      Path("checkpoints/pretrain"))
for key, value in result.items():
    live.log_metric(key, value, plot=False)
live.end()
with atomic_dir("models/pretrained") as out:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
shutil.rmtree("checkpoints/pretrain", ignore_errors=True)
print(f"pretrain: validation MLM loss {result['eval_loss']:.3f}, perplexity {result['perplexity']:.1f}")
