// Validates custom resources against the schemas that the npm packages
// @kubernetes-models/cloudnative-pg and @kubernetes-models/traefik generate
// from the projects' CRDs, in two passes:
//  1. the packages' JSON-schema validators (types, enums, required fields,
//     patterns) — these do not reject unknown fields, so
//  2. TypeScript's excess-property check against the same packages' types
//     (tsc --strict) catches a misspelt or unknown field.
// Usage: node scripts/check-crds.mjs NPM_DIR CRDS.json
// NPM_DIR holds node_modules; CRDS.json: [{source, doc}] from lint-deploy.sh.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { spawnSync } from "node:child_process";

export const MODELS = {
  "postgresql.cnpg.io/v1": "@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1",
  "traefik.io/v1alpha1": "@kubernetes-models/traefik/traefik.io/v1alpha1",
};
// The Barman Cloud plugin's ObjectStore has no npm model. Its
// spec.configuration is CloudNativePG's own BarmanObjectStoreConfiguration
// (plugin docs, usage.md), which the cloudnative-pg package does model: that
// part is checked against it; the rest of the spec (retentionPolicy,
// instanceSidecarConfiguration) is checked by check-k8s.py.
const PARTS = {
  "barmancloud.cnpg.io/v1/ObjectStore": {
    path: ["spec", "configuration"],
    kind: "BarmanObjectStoreConfiguration",
    module: "@kubernetes-models/cloudnative-pg/github.com/cloudnative-pg/barman-cloud/pkg/api",
  },
};
const partOf = (doc) => PARTS[`${doc.apiVersion}/${doc.kind}`];
const dig = (doc, path) => path.reduce((o, k) => (o == null ? undefined : o[k]), doc);

const [npmArg, file] = process.argv.slice(2);
const npmDir = resolve(npmArg);
const nodeModules = join(npmDir, "node_modules");
const docs = JSON.parse(readFileSync(file, "utf8"));
let failures = 0;
for (const { source, doc } of docs) {
  const base = MODELS[doc.apiVersion];
  const where = `${source}: ${doc.kind} ${doc.metadata?.name}`;
  const part = partOf(doc);
  if (part) {
    const mod = await import(pathToFileURL(join(nodeModules, part.module, `${part.kind}.js`)).href);
    const value = dig(doc, part.path);
    try {
      if (value === undefined) throw new Error(`${part.path.join(".")} is missing`);
      new mod[part.kind](value).validate();
      console.log(`ok   ${where} (${doc.apiVersion}; ${part.path.join(".")} as ${part.kind})`);
    } catch (e) {
      console.log(`FAIL ${where}: ${part.path.join(".")}: ${e.message}`);
      failures++;
    }
    continue;
  }
  if (!base) {
    console.log(`FAIL ${where}: no schema for ${doc.apiVersion}`);
    failures++;
    continue;
  }
  const mod = await import(pathToFileURL(join(nodeModules, base, `${doc.kind}.js`)).href);
  try {
    new mod[doc.kind](doc).validate();
    console.log(`ok   ${where} (${doc.apiVersion})`);
  } catch (e) {
    console.log(`FAIL ${where}: ${e.message}`);
    failures++;
  }
}

// Pass 2: one typed constant per document (or modelled part); tsc reports
// unknown fields.
const typed = docs.filter(({ doc }) => MODELS[doc.apiVersion] || partOf(doc));
const lines = [];
typed.forEach(({ doc }, i) => {
  const part = partOf(doc);
  if (part) lines.push(`import type { I${part.kind} as T${i} } from "${part.module}/${part.kind}";`);
  else lines.push(`import type { I${doc.kind} as T${i} } from "${MODELS[doc.apiVersion]}/${doc.kind}";`);
});
const starts = [];
typed.forEach(({ doc }, i) => {
  const part = partOf(doc);
  const value = part ? dig(doc, part.path) ?? {} : doc;
  starts.push(lines.length + 1);
  lines.push(...`export const d${i}: T${i} = ${JSON.stringify(value, null, 1)};`.split("\n"));
});
const tmp = mkdtempSync(join(npmDir, "crd-check-"));
try {
  const ts = join(tmp, "crds.ts");
  writeFileSync(ts, lines.join("\n") + "\n");
  const tsc = spawnSync(process.execPath, [join(nodeModules, "typescript/bin/tsc"), "--noEmit", "--strict",
    "--skipLibCheck", "--module", "esnext", "--moduleResolution", "bundler", "--target", "es2022", ts],
    { encoding: "utf8", cwd: npmDir });
  const text = (tsc.stdout || "") + (tsc.stderr || "");
  if (tsc.status !== 0) {
    const fileLines = readFileSync(ts, "utf8").split("\n");
    for (const m of text.matchAll(/crds\.ts\((\d+),\d+\): error TS\d+: ([^\n]*)/g)) {
      const line = Number(m[1]);
      let i = starts.length - 1;
      while (i > 0 && starts[i] > line) i--;
      const { source, doc } = typed[i];
      console.log(`FAIL ${source}: ${doc.kind} ${doc.metadata?.name}: ${m[2]} (at: ${fileLines[line - 1].trim()})`);
      failures++;
    }
    if (!failures) { console.log(text); failures++; }
  } else {
    console.log(`ok   no unknown fields in ${typed.length} custom resource(s) (tsc --strict)`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(failures ? 1 : 0);
