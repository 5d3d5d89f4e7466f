"""Stage pretrain: self-supervised masked-LM pre-training on the train split's text (labels unused)."""

from pathlib import Path

from transformers import AutoTokenizer

from ptft.artifacts import atomic_dir
from ptft.data import read_split
from ptft.modeling import build_config, masked_lm
from ptft.stage import run_stage
from ptft.training import open_live, pretrain_mlm

with run_stage("pretrain") as run:
    tokenizer = AutoTokenizer.from_pretrained("data/tokenizer")
    model = masked_lm(build_config(run.params["model"], tokenizer))
    train = list(read_split(Path("data/prepared"), "train")["text"])
    validation = list(read_split(Path("data/prepared"), "validation")["text"])

    with atomic_dir("reports/pretrain") as report:  # renamed into place only when complete
        live = open_live(report)
        result, run.facts["speed"] = pretrain_mlm(model, tokenizer, train, validation, run.params["pretrain"],
                                                  run.seed, live, run.checkpoint_dir)
        for key, value in result.items():
            live.log_metric(key, value, plot=False)
        live.end()
    run.save_model(
        model, tokenizer, "models/pretrained", result,
        title="ptft pre-trained encoder",
        summary=f"A {run.params['model']['family']} encoder pre-trained with masked language modelling on the "
                "train split's text (labels unused). Fine-tune it for classification with the finetune stage.",
        pipeline_tag="fill-mask",
        usage='from transformers import pipeline\n\nfill = pipeline("fill-mask", model="models/pretrained")\n'
              'print(fill("The bank raised its profit [MASK]."))',
    )
    print(f"pretrain: validation MLM loss {result['eval_loss']:.3f}, perplexity {result['perplexity']:.1f}")
