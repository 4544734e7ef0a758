// Bundle the verifier and its crypto (noble curves/hashes, MIT) into one ES module checked in under the package's
// static assets, so neither CI nor a node needs npm. Run: npm ci && npm run build (from web/explorer/).
// The banner records a SHA-256 over the sources and the lock file; tests/unit/test_explorer_bundle.py recomputes it,
// so a source edited without a rebuild fails the tests instead of shipping a stale verifier.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';

const h = createHash('sha256');
for (const f of ['package-lock.json', ...readdirSync('src').filter((n) => n.endsWith('.js')).sort().map((n) => `src/${n}`)]) {
  h.update(f + '\0');
  h.update(readFileSync(f));
  h.update('\0');
}
const sources = h.digest('hex');

await build({
  entryPoints: ['src/verify.js'],
  bundle: true,
  format: 'esm',
  target: 'es2020',
  minify: true,
  legalComments: 'eof',
  outfile: '../../src/qilian/api/static/explorer/verify.js',
  banner: { js: `// Built by web/explorer/build.mjs from web/explorer/src — do not edit; rebuild instead.\n// sources-sha256: ${sources}` },
});
console.log(`wrote src/qilian/api/static/explorer/verify.js (sources ${sources.slice(0, 16)}…)`);
