"""Stage finetune: sequence classification from the pre-trained model, from scratch, or from a checkpoint
(one label per document, or a set of labels: multi-label)."""

from ptft.pipeline.evaluation import validation_threshold
from ptft.pipeline.finetuning import finetune_inputs
from ptft.pipeline.multilabel_pipeline import CUSTOM_PIPELINES, SOURCE
from ptft.pipeline.params import finetune_seed
from ptft.pipeline.pruning import trial_callbacks
from ptft.pipeline.stage import run_stage
from ptft.pipeline.training import finetune_classifier, open_live

with run_stage("finetune", seed=finetune_seed) as run:
    finetune = run.params["finetune"]
    pruning = trial_callbacks()  # a `ptft search` trial's run reports its validation curve, and may be stopped
    inputs = finetune_inputs(run.params, run.seed)
    model, tokenizer, labels, multi_label = inputs.model, inputs.tokenizer, inputs.labels, inputs.multi_label

    # The report is renamed into place only when complete.
    with run.output_dir("reports/finetune") as report, run.system_monitor():
        live = open_live(report)
        result, run.facts["speed"] = finetune_classifier(model, tokenizer, inputs.train, inputs.validation, finetune,
                                                         run.seed, live, run.checkpoint_dir, run.runtime, pruning)
        result["frozen_parameters"] = inputs.frozen
        result["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if multi_label:  # the decision threshold is chosen on validation (never on test) and kept in the config
            result["threshold"] = model.config.threshold = validation_threshold(
                model, tokenizer, inputs.validation_rows, labels, finetune["batch_size"])
            model.config.custom_pipelines = CUSTOM_PIPELINES
        for key, value in result.items():
            live.log_metric(key, value, plot=False)
        live.end()

    task = "multi-label" if multi_label else f"{len(labels)}-way"
    run.save_model(
        model, tokenizer, "models/finetuned", result, init=("finetune.init", finetune["init"]),
        files=(SOURCE,) if multi_label else (),
        title="ptft text classifier",
        summary=f"Fine-tuned from `{finetune['init']}` for {task} classification ({', '.join(labels)}).",
        pipeline_tag="text-classification",
        usage=('from transformers import pipeline\n\n'
               '# every label whose probability reaches the threshold chosen on validation\n'
               'tag = pipeline(model="models/finetuned", trust_remote_code=True)\n'
               'print(tag("Shares rose after the bank raised its profit forecast."))') if multi_label else
              ('from transformers import pipeline\n\n'
               'classify = pipeline("text-classification", model="models/finetuned")\n'
               'print(classify("Shares rose after the bank raised its profit forecast."))'),
    )
    print(f"finetune: best epoch {result['best_epoch']:.0f}, "
          f"validation macro-F1 {result['validation_macro_f1']:.3f}")
