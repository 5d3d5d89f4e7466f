"""Pre-training throughput of the configured model on this machine (a benchmark, not a test).

Measures, in one run:
- tokens/s and peak memory of the real pretrain path (ptft's Trainer, masking collator, dvclive logging)
  against a minimal hand-written loop (forward, backward, AdamW step) on the same model and batches,
  alternating segments so that a noisy machine slows both alike;
- model FLOPs utilisation: FLOPs per token (:func:`ptft.pipeline.modeling.flops_per_token`) times tokens/s, over
  this machine's peak (a large fp32 matmul timed here on CPU; the card's bf16 dense peak on GPU);
- what sparse MLM prediction saves (the real path with dense decoding, in the same alternation);
- what dynamic padding and length grouping save in fine-tuning and evaluation;
- time per pretrain step at sequence lengths 64/128/256 and batch sizes 8/32, and time of the pretrain
  stage's work (tokenise, group, one epoch, evaluate) on 25/50/100% of the train split, each against
  what the FLOP count predicts.

Usage (after `dvc repro prepare`):  python benchmarks/throughput.py [--config configs/smoke.yaml] [--quick]
Writes benchmarks/results/throughput.json and throughput.md.

``--kernels avx2 native compatible`` measures instead what ``runtime.kernels`` costs: pretrain and finetune
steps of the real path under each setting, each in a process of its own (the libraries read their kernel
settings when they load), alternating the settings round by round in one run. Writes kernels.json and kernels.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ptft.pipeline.kernels import kernel_facts, pin  # first: ptft.pipeline pins params.yaml's runtime.kernels

if __name__ == "__main__" and "--segment" in sys.argv:  # a --kernels child: its own setting, before torch loads
    pin(sys.argv[sys.argv.index("--segment") + 1])

import numpy as np
import psutil
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback

from ptft.pipeline.data import read_labels, read_split, read_split_dataset
from ptft.pipeline.evaluation import predict_proba
from ptft.pipeline.modeling import classifier, flops_per_token, language_model
from ptft.pipeline.params import deep_merge, load_params, read_yaml
from ptft.pipeline.runtime import setup_runtime
from ptft.pipeline.training import encode_labelled, mask_batch, open_live, pretrain_trainer, training_arguments
from ptft.pipeline.windows import Windows

PREPARED, TOKENIZER, RESULTS = Path("data/prepared"), Path("data/tokenizer"), Path("benchmarks/results")
# Dense bf16 tensor-core peaks from the vendors' datasheets (FLOP/s), for MFU on GPUs.
GPU_BF16_PEAK = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


class PeakMemory:
    """Peak memory while the block runs: process RSS sampled every 5 ms on CPU, allocator peak on GPU."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()


class StepTimes(TrainerCallback):
    """The wall-clock time at the end of every optimizer step (synchronised on GPU)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - Trainer's signature
        _sync()
        self.times.append(time.perf_counter())


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """FLOP/s of an n×n by n×n matmul, the best of ``repeats`` timings after a warm-up."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    best = math.inf
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        a @ b
        _sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def peak_flops(device: torch.device, quick: bool) -> dict[str, Any]:
    """This machine's peak: measured fp32 on CPU; on GPU the datasheet bf16 peak, with a measured bf16 matmul."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name()
        measured = matmul_peak(device, torch.bfloat16, 8192, 10)
        sheet = next((peak for card, peak in GPU_BF16_PEAK.items() if card in name), None)
        return {"device": name, "peak_flops": sheet or measured, "basis": "datasheet bf16 dense" if sheet
                else "measured bf16 matmul", "measured_bf16_matmul_flops": measured}
    n = 1024 if quick else 2048
    return {"device": platform.processor() or platform.machine(),
            "peak_flops": matmul_peak(device, torch.float32, n, 5),
            "basis": f"measured fp32 matmul {n}x{n}, {torch.get_num_threads()} threads"}


def real_path_segment(trainer: Trainer, timer: StepTimes, warmup: int, device: torch.device) -> dict[str, float]:
    """Run the pretrain Trainer for its max_steps; tokens/s over the steps after ``warmup``."""
    timer.times.clear()
    with PeakMemory(device) as memory:
        trainer.train()
    steps = len(timer.times) - 1 - warmup
    tokens = steps * trainer.args.train_batch_size * trainer.args.gradient_accumulation_steps * \
        len(trainer.train_dataset[0]["input_ids"]) * trainer.args.world_size
    return {"tokens_per_second": tokens / (timer.times[-1] - timer.times[warmup]), "peak_memory": memory.peak}


def bare_loop_segment(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], lr: float, warmup: int,
                      device: torch.device, bf16: bool) -> dict[str, float]:
    """The same steps by hand: forward, backward, AdamW step, nothing else."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    with PeakMemory(device) as memory:
        for i, batch in enumerate(batches):
            if i == warmup:
                _sync()
                start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _sync()
    tokens = (len(batches) - warmup) * batches[0]["input_ids"].numel()
    return {"tokens_per_second": tokens / (time.perf_counter() - start), "peak_memory": memory.peak}


def build_trainer(params: dict[str, Any], pretrain: dict[str, Any], train: Any, validation: Any, steps: int,
                  work: Path, model: torch.nn.Module | None = None) -> tuple[Trainer, StepTimes]:
    """The pretrain stage's Trainer (ptft.pipeline.training.pretrain_trainer) for ``steps`` steps, without evaluations
    or checkpoints; its dvclive logging stays on."""
    built, tokenizer = language_model(pretrain, params["model"], TOKENIZER)
    model = built if model is None else model
    live = open_live(work / "live")
    trainer = pretrain_trainer(model, tokenizer, train, validation, pretrain, params["seed"], live, work,
                               params["runtime"], max_steps=steps, eval_strategy="no", save_strategy="no",
                               logging_steps=max(1, steps // 10))
    timer = StepTimes()
    trainer.add_callback(timer)
    return trainer, timer


def masked_batches(trainer: Trainer, count: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """``count`` batches of the trainer's blocks, masked as the Trainer masks them, ready on ``device``."""
    blocks = trainer.train_dataset.with_format("torch")["input_ids"]
    size = trainer.args.train_batch_size * trainer.args.gradient_accumulation_steps
    batches = []
    for i in range(count):
        rows = blocks[(i * size) % (len(blocks) - size):][:size]
        batch = {"input_ids": rows, "attention_mask": torch.ones_like(rows)}
        if hasattr(trainer, "masker"):
            batch = mask_batch(batch, trainer.masker, (0, i))
        else:
            batch["labels"] = rows.clone()
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def overhead_and_mfu(params: dict[str, Any], train: Any, validation: Any, device: torch.device, peak: float,
                     steps: int, rounds: int, warmup: int, work: Path) -> dict[str, Any]:
    """Real path vs bare loop (and the real path with dense MLM decoding), alternating, ``rounds`` times."""
    pretrain = params["pretrain"]
    arms: dict[str, tuple[Trainer, StepTimes]] = {"real": build_trainer(params, pretrain, train, validation, steps,
                                                                        work / "real")}
    model = arms["real"][0].model
    sparse = getattr(model.config, "sparse_prediction", None)
    if sparse:  # the same weights, decoding every position
        dense_model = copy.deepcopy(model)
        dense_model.config.sparse_prediction = dense_model.sparse_prediction = False  # read once, in __init__
        arms["real_dense"] = build_trainer(params, pretrain, train, validation, steps, work / "dense", dense_model)
    batches = masked_batches(arms["real"][0], steps, device)
    bare_model = copy.deepcopy(model).to(device)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in (*arms, "bare")}
    for round_ in range(rounds):
        order = [*arms, "bare"] if round_ % 2 == 0 else ["bare", *reversed(arms)]
        for name in order:
            if name == "bare":
                samples[name].append(bare_loop_segment(bare_model, batches, pretrain["lr"], warmup, device,
                                                       params["runtime"]["bf16"]))
            else:
                samples[name].append(real_path_segment(*arms[name], warmup, device))
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    result = {name: {"tokens_per_second": median([s["tokens_per_second"] for s in runs]),
                     "peak_memory_mb": max(s["peak_memory"] for s in runs) / 2**20,
                     "rounds": [round(s["tokens_per_second"], 1) for s in runs]}
              for name, runs in samples.items()}
    fraction = pretrain["mask_prob"] if sparse else 1.0
    flops = flops_per_token(model, pretrain["seq_len"], fraction)
    result["real"]["flops_per_token"] = flops
    result["real"]["mfu"] = flops * result["real"]["tokens_per_second"] / peak
    result["bare"]["mfu"] = flops * result["bare"]["tokens_per_second"] / peak
    result["real_over_bare"] = result["real"]["tokens_per_second"] / result["bare"]["tokens_per_second"]
    result["parameters"] = sum(p.numel() for p in model.parameters())
    if sparse:
        result["real_dense"]["flops_per_token"] = flops_per_token(model, pretrain["seq_len"], 1.0)
        result["sparse_over_dense"] = result["real"]["tokens_per_second"] / result["real_dense"]["tokens_per_second"]
    return result


def scaling(params: dict[str, Any], train: Any, validation: Any, steps: int, warmup: int,
            work: Path) -> dict[str, Any]:
    """Time per pretrain step at sequence lengths 64/128/256 and global batches 8/32, against the FLOP count."""
    rows = []
    for seq_len in (64, 128, 256):
        for batch in (8, 32):
            pretrain = {**params["pretrain"], "seq_len": seq_len, "batch_size": batch}
            if seq_len > params["model"]["max_position"]:
                continue
            trainer, timer = build_trainer(params, pretrain, train, validation, steps, work / f"s{seq_len}-b{batch}")
            timer.times.clear()
            trainer.train()
            step = (timer.times[-1] - timer.times[warmup]) / (len(timer.times) - 1 - warmup)
            sparse = getattr(trainer.model.config, "sparse_prediction", False)
            flops = flops_per_token(trainer.model, seq_len, pretrain["mask_prob"] if sparse else 1.0) * seq_len * batch
            rows.append({"seq_len": seq_len, "batch_size": batch, "ms_per_step": 1000 * step,
                         "tokens_per_second": seq_len * batch / step, "gflops_per_step": flops / 1e9})
    base = rows[0]
    for row in rows:
        row["time_ratio"] = row["ms_per_step"] / base["ms_per_step"]
        row["flop_ratio"] = row["gflops_per_step"] / base["gflops_per_step"]
    return {"rows": rows, "fit": _linear_fit(rows, "gflops_per_step", "ms_per_step")}


def _linear_fit(rows: list[dict[str, Any]], x: str, y: str) -> dict[str, float]:
    """Least squares ``y = fixed + slope * x`` over ``rows``; each row gets the fit's prediction (``fit``)."""
    slope, fixed = np.polyfit([r[x] for r in rows], [r[y] for r in rows], 1)
    for row in rows:
        row["fit"] = fixed + slope * row[x]
    return {"fixed": float(fixed), "slope": float(slope)}


def corpus_fractions(params: dict[str, Any], work: Path) -> dict[str, Any]:
    """The pretrain stage's work (tokenise, group, one epoch, evaluate) on 25/50/100% of the train split."""
    full = read_split_dataset(PREPARED, "train")
    validation = read_split_dataset(PREPARED, "validation")
    rows = []
    for fraction in (0.25, 0.5, 1.0):
        texts = list(full.select(range(round(len(full) * fraction)))["text"])
        pretrain = {**params["pretrain"], "epochs": 1}
        model, tokenizer = language_model(pretrain, params["model"], TOKENIZER)
        start = time.perf_counter()
        trainer = pretrain_trainer(model, tokenizer, texts, list(validation["text"]), pretrain, params["seed"],
                                   open_live(work / f"c{fraction}" / "live"), work / f"c{fraction}", params["runtime"],
                                   eval_strategy="no", save_strategy="no")
        trainer.train()
        trainer.evaluate()
        _sync()
        rows.append({"fraction": fraction, "documents": len(texts), "blocks": len(trainer.train_dataset),
                     "seconds": time.perf_counter() - start})
    for row in rows:
        row["time_ratio"], row["token_ratio"] = row["seconds"] / rows[-1]["seconds"], row["blocks"] / rows[-1]["blocks"]
    return {"rows": rows, "fit": _linear_fit(rows, "blocks", "seconds")}


def padding(params: dict[str, Any], steps: int, warmup: int, work: Path) -> dict[str, Any]:
    """Fine-tuning steps and validation inference: dynamic padding (and length grouping) vs padding to max_length."""
    finetune, labels = params["finetune"], read_labels(PREPARED)
    train, validation = read_split(PREPARED, "train"), read_split(PREPARED, "validation")
    results: dict[str, Any] = {}
    for max_length in sorted({finetune["max_length"], min(512, params["model"]["max_position"])}):
        model, tokenizer = classifier("scratch", params["model"], TOKENIZER, labels, finetune["pooling"])
        data = encode_labelled(list(train["text"]), list(train["label"]), model.config.label2id, tokenizer,
                               Windows(max_length))
        lengths = [len(ids) for ids in data["input_ids"]]
        row: dict[str, Any] = {"truncated_share": sum(n == max_length for n in lengths) / len(lengths),
                               "mean_tokens": sum(lengths) / len(lengths)}
        for name, collator, grouped in (
            ("max_length", DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length), False),
            ("dynamic", DataCollatorWithPadding(tokenizer), False),
            ("dynamic_grouped", DataCollatorWithPadding(tokenizer), True),
        ):
            args = training_arguments({**finetune, "epochs": 1, "group_by_length": grouped}, params["seed"],
                                      work / "ft", "finetune", params["runtime"], max_steps=steps, eval_strategy="no",
                                      save_strategy="no", logging_steps=steps)
            timer = StepTimes()
            Trainer(model=model, args=args, train_dataset=data, data_collator=collator, callbacks=[timer]).train()
            row[f"train_{name}_ms_per_step"] = 1000 * (timer.times[-1] - timer.times[warmup]) / (steps - 1 - warmup)
        texts = list(validation["text"])
        tokenizer.model_max_length = max_length
        for name, sort in (("max_length", None), ("dynamic", False), ("dynamic_sorted", True)):
            start = time.perf_counter()
            _predict(model, tokenizer, texts, params["evaluate"]["batch_size"], max_length, sort)
            row[f"eval_{name}_seconds"] = time.perf_counter() - start
        results[str(max_length)] = row
    return results


@torch.inference_mode()
def _predict(model: torch.nn.Module, tokenizer: Any, texts: list[str], batch_size: int, max_length: int,
             sort: bool | None) -> None:
    """Validation inference padded to max_length (``sort=None``), to each batch's longest text in the
    split's order (False), or longest first as the evaluate stage does (True)."""
    if sort:
        predict_proba(model, tokenizer, texts, batch_size, Windows(max_length))
        return
    model.eval()
    for start in range(0, len(texts), batch_size):
        model(**tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length,
                          padding="max_length" if sort is None else True, return_tensors="pt"))


def markdown(result: dict[str, Any]) -> str:
    """The human-readable table of a result."""
    o, p = result["overhead"], result["peak"]
    lines = [f"# Pre-training throughput on {p['device']} ({result['threads']} threads)\n",
             f"Model: {result['model']} ({o['parameters']:,} parameters), seq_len {result['seq_len']}, "
             f"batch {result['batch_size']}; peak {p['peak_flops'] / 1e12:.3f} TFLOP/s ({p['basis']}).\n",
             "| path | tokens/s | peak memory (MiB) | MFU |", "| --- | --- | --- | --- |"]
    for name, label in (("real", "ptft pretrain path (Trainer, masking, dvclive)"), ("bare", "bare PyTorch loop"),
                        ("real_dense", "ptft pretrain path, dense MLM decoding")):
        if name in o:
            mfu = o[name].get("mfu", o[name].get("flops_per_token", 0) * o[name]["tokens_per_second"] / p["peak_flops"])
            lines.append(f"| {label} | {o[name]['tokens_per_second']:,.0f} | {o[name]['peak_memory_mb']:,.0f} | "
                         f"{100 * mfu:.1f}% |")
    lines.append(f"\nptft path / bare loop: **{o['real_over_bare']:.3f}**; "
                 f"FLOPs per token {o['real']['flops_per_token']:,.0f}.")
    if "sparse_over_dense" in o:
        lines.append(f"Sparse MLM prediction: {o['sparse_over_dense']:.2f}x the tokens/s of dense decoding.")
    scale = result["scaling"]
    lines += ["\n## Time per pretrain step\n",
              "| seq_len | batch | GFLOP/step | ms/step | fitted ms | tokens/s | time ratio | FLOP ratio |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['seq_len']} | {r['batch_size']} | {r['gflops_per_step']:.2f} | {r['ms_per_step']:.1f} | "
              f"{r['fit']:.1f} | {r['tokens_per_second']:,.0f} | {r['time_ratio']:.2f} | {r['flop_ratio']:.2f} |"
              for r in scale["rows"]]
    fixed, slope = scale["fit"]["fixed"], scale["fit"]["slope"]
    lines.append(f"\nFit: {fixed:.1f} ms per step whatever its size, plus {slope:.1f} ms per GFLOP "
                 f"({1000 / slope:.0f} GFLOP/s at the margin).")
    lines += ["\n## The pretrain stage's work (1 epoch) by share of the train split\n",
              "| share | documents | blocks | seconds | time ratio | token ratio |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['fraction']:.0%} | {r['documents']} | {r['blocks']} | {r['seconds']:.1f} | "
              f"{r['time_ratio']:.2f} | {r['token_ratio']:.2f} |" for r in result["corpus"].get("rows", [])]
    if result["corpus"]:
        fit = result["corpus"]["fit"]
        lines.append(f"\nFit: {fit['fixed']:.1f} s whatever the corpus size, plus {1000 * fit['slope']:.2f} s "
                     "per 1,000 blocks.")
    lines += ["\n## Fine-tuning and evaluation: padding\n",
              "| max_length | truncated | mean tokens | train ms/step: max_length / dynamic / grouped | "
              "validation inference s: max_length / dynamic / sorted |", "| --- | --- | --- | --- | --- |"]
    for max_length, r in result["padding"].items():
        lines.append(f"| {max_length} | {r['truncated_share']:.0%} | {r['mean_tokens']:.0f} | "
                     f"{r['train_max_length_ms_per_step']:.0f} / {r['train_dynamic_ms_per_step']:.0f} / "
                     f"{r['train_dynamic_grouped_ms_per_step']:.0f} | "
                     f"{r['eval_max_length_seconds']:.2f} / {r['eval_dynamic_seconds']:.2f} / "
                     f"{r['eval_dynamic_sorted_seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def _ms_per_step(timer: StepTimes, warmup: int) -> float:
    return 1000 * (timer.times[-1] - timer.times[warmup]) / (len(timer.times) - 1 - warmup)


def kernel_segment(params: dict[str, Any], steps: int, warmup: int) -> dict[str, Any]:
    """ms per optimizer step of the real pretrain path and of fine-tuning (the finetune stage's Trainer, from
    random weights), in this process's kernel setting."""
    from ptft.pipeline.finetuning import finetune_inputs
    from ptft.pipeline.training import finetune_trainer

    setup_runtime(params["seed"], params["runtime"]["threads"], params["runtime"]["deterministic"])
    train, validation = read_split_dataset(PREPARED, "train"), read_split_dataset(PREPARED, "validation")
    result: dict[str, Any] = {"kernels": kernel_facts()}
    with tempfile.TemporaryDirectory() as tmp:
        trainer, timer = build_trainer(params, params["pretrain"], train, validation, steps, Path(tmp) / "pretrain")
        trainer.train()
        result["pretrain_ms_per_step"] = _ms_per_step(timer, warmup)
        scratch = deep_merge(params, {"finetune": {"init": "scratch"}})
        inputs = finetune_inputs(scratch, params["seed"])
        trainer, _ = finetune_trainer(inputs.model, inputs.tokenizer, inputs.train, inputs.validation,
                                      scratch["finetune"], params["seed"], None, Path(tmp) / "finetune",
                                      params["runtime"], max_steps=steps, eval_strategy="no", save_strategy="no",
                                      load_best_model_at_end=False)
        timer = StepTimes()
        trainer.add_callback(timer)
        trainer.train()
        result["finetune_ms_per_step"] = _ms_per_step(timer, warmup)
    return result


def kernel_costs(settings: list[str], config: Path | None, steps: int, rounds: int) -> dict[str, Any]:
    """Each setting's ms per step, the median of ``rounds`` child processes, the settings' order alternating."""
    samples: dict[str, list[dict[str, Any]]] = {setting: [] for setting in settings}
    for round_ in range(rounds):
        for setting in settings if round_ % 2 == 0 else settings[::-1]:
            cmd = [sys.executable, __file__, "--segment", setting, "--steps", str(steps)]
            done = subprocess.run(cmd + (["--config", str(config)] if config else []), capture_output=True, text=True,
                                  check=True)
            samples[setting].append(json.loads(done.stdout.strip().splitlines()[-1]))
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    base = settings[0]
    result: dict[str, Any] = {"steps": steps, "rounds": rounds, "baseline": base, "settings": {}}
    for setting, runs in samples.items():
        entry = {key: median([r[key] for r in runs]) for key in ("pretrain_ms_per_step", "finetune_ms_per_step")}
        entry["rounds"] = [{k: round(r[k], 1) for k in entry} for r in runs]
        entry["kernels"] = runs[0]["kernels"]
        result["settings"][setting] = entry
    for entry in result["settings"].values():
        for key in ("pretrain", "finetune"):
            entry[f"{key}_time_over_{base}"] = entry[f"{key}_ms_per_step"] / \
                result["settings"][base][f"{key}_ms_per_step"]
    return result


def kernels_markdown(result: dict[str, Any]) -> str:
    base = result["baseline"]
    cpu = next(iter(result["settings"].values()))["kernels"]["cpu"]
    lines = [f"CPU: {cpu['model']} ({cpu['vendor']}); median of {result['rounds']} rounds of {result['steps']} steps, "
             "each setting in its own process, alternating.\n",
             f"| runtime.kernels | torch kernels | pretrain ms/step | finetune ms/step | time vs {base}: pretrain / "
             "finetune |", "| --- | --- | --- | --- | --- |"]
    for setting, r in result["settings"].items():
        lines.append(f"| {setting} | {r['kernels']['torch_cpu_capability']} | {r['pretrain_ms_per_step']:.1f} | "
                     f"{r['finetune_ms_per_step']:.1f} | {r[f'pretrain_time_over_{base}']:.2f} / "
                     f"{r[f'finetune_time_over_{base}']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="a partial params file merged over params.yaml")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per timed segment")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the real path and the bare loop")
    parser.add_argument("--quick", action="store_true", help="a few steps of everything (checks the script runs)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--kernels", nargs="+", metavar="SETTING",
                        help="measure runtime.kernels settings against the first instead (kernels.json)")
    parser.add_argument("--segment", help=argparse.SUPPRESS)  # one --kernels measurement, in its own process
    args = parser.parse_args()
    params = load_params()
    if args.config:
        params = deep_merge(params, read_yaml(args.config))
    if args.segment:
        print(json.dumps(kernel_segment(params, args.steps, 5)))
        return
    if args.kernels:
        result = kernel_costs(args.kernels, args.config, args.steps, args.rounds)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "kernels.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "kernels.md").write_text(kernels_markdown(result))
        print(kernels_markdown(result))
        return
    steps, warmup, rounds = (6, 2, 1) if args.quick else (args.steps, 5, args.rounds)
    setup_runtime(params["seed"], params["runtime"]["threads"], params["runtime"]["deterministic"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train, validation = read_split_dataset(PREPARED, "train"), read_split_dataset(PREPARED, "validation")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        peak = peak_flops(device, args.quick)
        result = {
            "model": f"{params['model']['family']} {params['model']['layers']}x{params['model']['hidden']}",
            "seq_len": params["pretrain"]["seq_len"], "batch_size": params["pretrain"]["batch_size"],
            "threads": torch.get_num_threads(), "torch": torch.__version__, "kernels": kernel_facts(), "peak": peak,
            "overhead": overhead_and_mfu(params, train, validation, device, peak["peak_flops"], steps, rounds, warmup,
                                         work),
            "scaling": scaling(params, train, validation, max(steps // 2, warmup + 3), warmup, work),
            "corpus": corpus_fractions(params, work) if not args.quick else {},
            "padding": padding(params, max(steps // 2, warmup + 3), warmup, work),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / "throughput.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
