"""Stage pretrain: self-supervised pre-training (masked or causal LM) on the pre-training text's token blocks
(data/corpus, written by prepare_corpus from pretrain.corpus; labels unused).

The comparison's own pre-trained models:
- ``python stages/pretrain.py objective NAME`` (stage pretrain_objective@NAME): the pretrain params with
  ``compare.objective_settings.NAME`` merged over them, written to models/objective-NAME;
- ``python stages/pretrain.py continued NAME`` (stage pretrain_continued@NAME): the checkpoint NAME pre-trained
  further with masked LM on the same text, in its own tokenizer, with ``compare.continued_settings``, written
  to models/continued-NAME.
"""

import sys
from pathlib import Path

from ptft.pipeline.blocks import TokenBlocks, check_tokenizer, corpus_dataset
from ptft.pipeline.cost import announce, pretrain_estimate, pretrain_flops_per_token
from ptft.pipeline.data import read_split_dataset
from ptft.pipeline.modeling import language_model
from ptft.pipeline.params import comparison_model_pretrain
from ptft.pipeline.stage import run_stage
from ptft.pipeline.training import check_budget, open_live, pretrain_lm, pretrain_trainer

CORPUS = Path("data/corpus")
kind, name = (sys.argv[1], sys.argv[2]) if len(sys.argv) > 2 else ("main", None)
stage, artifact, reports = {
    "main": ("pretrain", "models/pretrained", "reports/pretrain"),
    "objective": (f"pretrain_objective@{name}", f"models/objective-{name}",
                  f"reports/compare/pretraining/objective-{name}"),
    "continued": (f"pretrain_continued@{name}", f"models/continued-{name}",
                  f"reports/compare/pretraining/continued-{name}"),
}[kind]
with run_stage(stage) as run:
    pretrain = run.params["pretrain"] if kind == "main" else comparison_model_pretrain(kind, name, run.params)
    short, objective = {"mlm": ("masked LM", "masked language modelling"),
                        "clm": ("causal LM", "causal language modelling"),
                        "electra": ("ELECTRA", "replaced-token detection (ELECTRA)")}[pretrain["objective"]]
    model, tokenizer = language_model(pretrain, run.params["model"], Path("data/tokenizer"))
    if kind == "continued":  # the checkpoint's own tokenizer, not the one the token arrays were made with
        train = corpus_dataset(CORPUS)
    else:
        check_tokenizer(CORPUS, tokenizer)
        train = TokenBlocks(CORPUS, pretrain["seq_len"])
    check_budget(pretrain, len(train))
    announce(stage, run.params, lambda sizes, speed: pretrain_estimate(stage, pretrain, run.params, sizes, speed))
    validation = read_split_dataset(Path("data/prepared"), "validation")

    # The report is renamed into place only when complete.
    with run.output_dir(reports) as report, run.system_monitor():
        live = open_live(report)
        result, speed = pretrain_lm(pretrain_trainer(model, tokenizer, train, validation, pretrain, run.seed, live,
                                                     run.checkpoint_dir, run.runtime))
        per_token = pretrain_flops_per_token(pretrain, model.config)
        run.facts["speed"] = {**speed, "train_flops_per_second":  # what `ptft estimate` scales to other runs
                              speed.get("train_tokens_per_second", 0.0) * per_token}
        for key, value in result.items():
            live.log_metric(key, value, plot=False)
        live.end()
    start = "from random weights" if pretrain["init"] == "scratch" else f"continued from `{pretrain['init']}`"
    text = "the train split's text" if pretrain["corpus"] == "train" else f"`{pretrain['corpus']}`"
    if pretrain["objective"] == "electra":  # the discriminator's encoder; the generator is left behind
        model, tag = model.encoder, "feature-extraction"
        usage = ('from transformers import AutoModel, AutoTokenizer\n\nmodel = AutoModel.from_pretrained("{0}")\n'
                 'tokens = AutoTokenizer.from_pretrained("{0}")("The bank raised its profit.", return_tensors="pt")\n'
                 'print(model(**tokens).last_hidden_state.shape)')
    elif pretrain["objective"] == "mlm":
        tag = "fill-mask"
        usage = ('from transformers import pipeline\n\nfill = pipeline("fill-mask", model="{0}")\n'
                 'print(fill("The bank raised its profit [MASK]."))')
    else:
        tag = "text-generation"
        usage = ('from transformers import pipeline\n\ngenerate = pipeline("text-generation", model="{0}")\n'
                 'print(generate("The bank raised its profit", max_new_tokens=10))')
    run.save_model(
        model, tokenizer, artifact, result, init=("pretrain.init", pretrain["init"]),
        title=f"ptft pre-trained {model.config.model_type} ({short})",
        summary=f"Pre-trained with {objective} on {text} ({result['train_tokens']:,} tokens; "
                f"labels unused), {start}. Fine-tune it for classification with the finetune stage.",
        pipeline_tag=tag,
        usage=usage.format(artifact),
    )
    perplexity = f", perplexity {result['perplexity']:.1f}" if "perplexity" in result else ""
    print(f"{stage}: validation {pretrain['objective'].upper()} loss {result['eval_loss']:.3f}{perplexity}")
