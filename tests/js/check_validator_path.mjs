// Runs the explorer's bundled verifier over validator-path cases written by
// tests/unit/test_explorer_validator_path_js.py and prints one JSON verdict per case, which the Python test compares
// with qilian.sdk.verify.verify_validator_path. Also drives the page's incremental trust (extendTrust) and
// verifyHeader's NeedValidatorPath signal. Usage: node check_validator_path.mjs BUNDLE CASES.json
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [bundle, casesPath] = process.argv.slice(2);
const V = await import(pathToFileURL(bundle).href);
const doc = JSON.parse(readFileSync(casesPath, 'utf8'));

const verdict = (fn) => {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (!(e instanceof V.ProofInvalid)) throw e; // anything else is a bug in the verifier
    return { ok: false, error: e.message, need: e instanceof V.NeedValidatorPath ? e.height : null };
  }
};

const out = { paths: {}, flows: {} };
for (const c of doc.cases) {
  const ctx = V.makeContext(doc.genesis);
  out.paths[c.name] = verdict(() => V.verifyValidatorPath(ctx, c.path).map((s) => s.from));
}
for (const f of doc.flows) {
  // A sequence of steps on one page context: ["header", h] verifies header h; ["extend", pathName, to] follows a path.
  const ctx = V.makeContext(doc.genesis);
  out.flows[f.name] = f.steps.map(([kind, a, b]) => verdict(() => {
    if (kind === 'header') return V.verifyHeader(ctx, doc.headers[a].header, doc.headers[a].commit).header.height;
    return V.extendTrust(ctx, doc.paths[a], b).spans.map((s) => s.from);
  }));
}
console.log(JSON.stringify(out));
