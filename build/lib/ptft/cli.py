"""The ``ptft`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# What `ptft serve` needs alone at the top: the serving install (requirements/serve.txt) has no DVC, pandas or torch.
from ptft.pipeline.params import PARAMS_FILE, UserError, merge_files


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {value!r}")
    return int(value)


def _port(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {value!r}")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ptft", description="ptft: pre-train and fine-tune text classifiers on DVC")
    commands = parser.add_subparsers(dest="command", required=True)
    merge = commands.add_parser("merge-params", help="deep-merge a partial params file (e.g. configs/smoke.yaml) "
                                                     "into params.yaml")
    merge.add_argument("override", help="partial params file whose keys replace those of params.yaml")
    merge.add_argument("--params", default=str(PARAMS_FILE), help="params file to update (default: params.yaml)")
    trace = commands.add_parser("lineage", help="print where an artifact came from, back to the raw corpus, the "
                                                 "commit that recorded it, and how to rebuild it")
    trace.add_argument("artifact",
                       help="a directory a stage wrote: models/finetuned, models/exported, models/pretrained, "
                            "data/prepared or data/corpus")
    trace.add_argument("--json", action="store_true", help="print the same as JSON, for scripts")
    report = commands.add_parser("report", help="markdown report of params, metrics and loss curves against a base "
                                                 "revision (what the pull-request comment shows)")
    report.add_argument("--base", default="main", help="git revision to compare with (default: main)")
    report.add_argument("--out", default="pr-report", help="directory for report.md and its PNGs (default: pr-report)")
    predict = commands.add_parser("predict", help="label texts with a fine-tuned model: JSON lines with the label "
                                                  "(a multi-label model: the labels above its threshold), its score "
                                                  "and every class probability")
    predict.add_argument("input", nargs="?", default="-", help="a .txt file (one text per line), a .csv/.jsonl/"
                                                               ".parquet file (see --column), or - for stdin "
                                                               "(default); one output record per input record")
    predict.add_argument("--model", default="models/finetuned", help="model directory (default: models/finetuned), "
                         "an exported one (models/exported: ONNX Runtime) or its model.int8.onnx")
    predict.add_argument("--column", action="append", help="the text column of a table input (default: text); "
                         "repeat it for several fields, in data.text_column's order, to join them as prepare does")
    predict.add_argument("--id-column", help="a table input's column that identifies each record (default: the row "
                                             "index, from 0; a text file's records are its line numbers, from 1)")
    predict.add_argument("--output", "-o", default="-", help="JSONL file to write (default: - for stdout)")
    predict.add_argument("--batch-size", type=_positive, default=64, help="texts per forward pass (default: 64)")
    predict.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda or cuda:N")
    serve = commands.add_parser("serve", help="serve a fine-tuned model over HTTP (POST /predict, GET /health, "
                                              "GET /model, GET /metrics), batching concurrent requests into one "
                                              "forward pass")
    serve.add_argument("model", nargs="?", default="models/finetuned", help="model directory (default: "
                       "models/finetuned), an exported one (models/exported: ONNX Runtime) or its model.int8.onnx")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for "
                                                          "every interface)")
    serve.add_argument("--port", type=_port, default=8000, help="port (default: 8000)")
    serve.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda or cuda:N")
    serve.add_argument("--max-batch", type=_positive, default=32, help="texts per forward pass (default: 32)")
    serve.add_argument("--batch-window-ms", type=float, default=5.0,
                       help="how long a forward pass waits for more requests to share it (default: 5)")
    serve.add_argument("--no-batching", action="store_true", help="one request per forward pass")
    serve.add_argument("--max-queue", type=_positive, default=1024,
                       help="requests that may wait; beyond it, 503 with Retry-After (default: 1024)")
    serve.add_argument("--max-texts", type=_positive, default=64, help="texts per request (default: 64)")
    serve.add_argument("--max-text-chars", type=_positive, default=100_000,
                       help="characters per text (default: 100000)")
    serve.add_argument("--max-body-bytes", type=_positive, default=1_000_000,
                       help="bytes per request body (default: 1000000); a longer one is refused as it arrives")
    serve.add_argument("--body-timeout-s", type=float, default=10.0,
                       help="seconds a client has to send its whole body, then 408 (default: 10)")
    exps = commands.add_parser("exp-show", help="dvc exp show narrowed to a terminal's width: the params the shown "
                               "experiments changed and the headline metrics (validation, test, pre-training gain)")
    exps.add_argument("--rev", action="append", help="git revision to show with its experiments (default: HEAD); "
                                                     "repeat for several")
    exps.add_argument("-n", "--num", type=_positive, default=1, help="show this many commits back from each --rev "
                                                                     "(default: 1)")
    exps.add_argument("--keep", action="append", default=[], help="a regex of more columns to show (as dvc exp "
                                                                  "show --keep), e.g. 'finetune\\..*'; repeatable")
    exps.add_argument("--sort-by", help="column to sort experiments by (as dvc exp show --sort-by)")
    exps.add_argument("--sort-order", choices=("asc", "desc"), help="with --sort-by (default: asc)")
    output = exps.add_mutually_exclusive_group()
    output.add_argument("--md", action="store_true", help="print a markdown table")
    output.add_argument("--csv", action="store_true", help="print CSV")
    exp_run = commands.add_parser("exp-run", help="dvc exp run, with its arguments; with --queue or --temp it first "
                                  "refuses data (data.source, pretrain.corpus) that neither git nor DVC tracks, which "
                                  "the queued run would not see")
    exp_run.add_argument("dvc_args", nargs="*", help="dvc exp run's arguments, options included (see dvc exp run -h)")
    find = commands.add_parser("search", help="an Optuna study whose trials are DVC experiments, scored on "
                               "validation (never test): seeded, resumable, pruned; report in reports/search/<study>/")
    find.add_argument("file", help="the search file: the params to vary and how (see configs/search.yaml)")
    find.add_argument("--trials", type=_positive, help="finished trials to reach (default: the file's `trials`)")
    find.add_argument("--jobs", type=_positive, help="experiments at once, through DVC's queue workers "
                                                     "(default: the file's `jobs`)")
    example = commands.add_parser("example-data", help="write the multi-label example corpus (BBC News articles "
                                  "tagged with their topic and keyword-derived tags, offline) as a text,tags CSV")
    example.add_argument("path", help="CSV file to write, e.g. data/raw/tags.csv")
    example.add_argument("--limit", type=_positive, default=None,
                         help="keep only the first N articles (default: all 2,125)")
    cost = commands.add_parser("estimate", help="estimate the time of each training stage for params.yaml and the "
                               "prepared data (after `dvc repro prepare_corpus`), from measured speed")
    cost.add_argument("--flops", type=float, help="the training FLOP/s to assume instead of the measured speed (a "
                      "GPU: for example a third of its bf16 peak)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["exp-run"]:  # every argument goes to dvc exp run as it is, options included
        from ptft.experiments import run as exp_run

        try:
            return exp_run(argv[1:])
        except UserError as err:
            print(f"ptft: error: {err}", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    try:
        if args.command == "merge-params":
            merge_files(args.params, args.override)
            print(f"merged {args.override} into {args.params}")
        elif args.command == "lineage":
            from ptft.trace import lineage, render

            found = lineage(args.artifact)
            print(json.dumps(found, indent=2) if args.json else render(found))
        elif args.command == "report":
            from ptft.report import build_report

            print(build_report(args.base, args.out), end="")
        elif args.command == "serve":
            from ptft.serve import Limits, serve

            serve(args.model, args.host, args.port, Limits(
                max_body_bytes=args.max_body_bytes, max_text_chars=args.max_text_chars, max_texts=args.max_texts,
                max_batch=args.max_batch, batch_window=args.batch_window_ms / 1000, max_queue=args.max_queue,
                batching=not args.no_batching, body_timeout=args.body_timeout_s), args.device)
        elif args.command == "exp-show":
            from ptft.experiments import show  # imports dvc: only when showing

            dvc_args = ["--md"] * args.md + ["--csv"] * args.csv
            dvc_args += ["--sort-by", args.sort_by] * bool(args.sort_by)
            dvc_args += ["--sort-order", args.sort_order] * bool(args.sort_order)
            return show(args.rev, args.num, dvc_args, args.keep)
        elif args.command == "search":
            from ptft.search import search

            try:
                search(args.file, args.trials, args.jobs)
            except KeyboardInterrupt:
                print(f"ptft search: interrupted; `ptft search {args.file}` resumes the study", file=sys.stderr)
                return 130
        elif args.command == "example-data":
            from ptft.example_data import write_tagged_csv

            try:
                print(json.dumps(write_tagged_csv(Path(args.path), args.limit), indent=2))
            except OSError as err:  # a directory that is not writable, a full disk
                raise UserError(f"cannot write {args.path}: {err.strerror or err}; choose a writable path") from err
        elif args.command == "estimate":
            from ptft.estimate import estimate  # imports transformers: only when estimating

            print(estimate(args.flops))
        elif args.command == "predict":
            from ptft.predict import write_predictions  # imports transformers: only when predicting

            count, empty = write_predictions(args.model, args.input, args.output, args.column or ["text"],
                                             args.batch_size, args.device, args.id_column)
            where = "" if args.output == "-" else f" to {args.output}"
            print(f"wrote {count} records{where}" + (f" ({empty} empty, marked \"error\": \"empty text\")"
                                                     if empty else ""), file=sys.stderr)
    except UserError as err:  # LineageError and ReportError among them
        print(f"ptft: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
