"""Stage compare_report: the comparison's tables, learning curve and headline gains."""

from pathlib import Path

from ptft.pipeline.artifacts import write_json, write_text
from ptft.pipeline.compare import curve_rows, gather, headline, markdown
from ptft.pipeline.plots import learning_curve
from ptft.pipeline.stage import run_stage

with run_stage("compare_report") as run:
    out = Path("reports/compare")
    results = gather(run.params)
    rows = curve_rows(results)
    gains = headline(results)
    write_json(out / "results.json", results)
    write_text(out / "results.md", markdown(results, run.params))
    write_json(out / "learning_curve.json", rows)
    learning_curve(rows, out / "learning_curve.png")
    write_json(out / "metrics.json", gains)  # last: DVC reads it as the comparison's metrics
for name, at in gains.items():
    print(f"{name}: " + ", ".join(f"{budget} {gain['accuracy']:+.3f} accuracy" for budget, gain in at.items()))
