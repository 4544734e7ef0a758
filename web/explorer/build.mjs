// Bundle the verifier and its crypto (noble curves/hashes, MIT) into one ES module checked in under the package's
// static assets, so neither CI nor a node needs npm. Run: npm ci && npm run build (from web/explorer/).
import { build } from 'esbuild';

await build({
  entryPoints: ['src/verify.js'],
  bundle: true,
  format: 'esm',
  target: 'es2020',
  minify: true,
  legalComments: 'eof',
  outfile: '../../src/qilian/api/static/explorer/verify.js',
  banner: { js: '// Built by web/explorer/build.mjs from web/explorer/src — do not edit; rebuild instead.' },
});
console.log('wrote src/qilian/api/static/explorer/verify.js');
