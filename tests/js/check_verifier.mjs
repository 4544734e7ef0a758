// Checks the explorer's bundled verifier against tests/vectors/encoding.json (run by
// tests/unit/test_explorer_verifier_js.py with Node.js; no npm needed). Prints "ok N" or throws.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [bundle, vectorsPath] = process.argv.slice(2);
const V = await import(pathToFileURL(bundle).href);
const vec = JSON.parse(readFileSync(vectorsPath, 'utf8'));
let n = 0;
const check = (cond, what) => { if (!cond) throw new Error(`FAILED: ${what}`); n++; };
const hex = V.bytesToHex, unhex = V.hexToBytes;

for (const v of vec.values) check(hex(V.encode(V.decode(unhex(v.hex)))) === v.hex, `value ${v.name}`);
for (const r of vec.rejected) {
  let threw = false;
  try { V.decode(unhex(r.hex)); } catch { threw = true; }
  check(threw, `rejected ${r.reason || r.hex}`);
}
check(hex(V.sm3(new TextEncoder().encode('abc'))) === '66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0', 'sm3 abc');
check(hex(V.sm3(new TextEncoder().encode('abcd'.repeat(16)))) === 'debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732', 'sm3 abcd*16');
for (const m of vec.merkle) {
  const hash = m.hash === 'sm3' ? V.sm3 : V.sha256;
  const leaves = m.leaves.map(unhex);
  const root = unhex(m.root);
  check(hex(V.merkleRootForTest(hash, leaves)) === m.root, `merkle root ${m.hash} ${m.leaves.length}`);
  m.proofs.forEach((p, i) => {
    check(V.isValidMerkleProofForTest(hash, root, leaves[i], p), `merkle proof ${m.hash} ${i}/${m.leaves.length}`);
    if (p.path.length) {
      const bad = { ...p, path: [p.path[0].replace(/^./, (c) => (c === '0' ? '1' : '0')), ...p.path.slice(1)] };
      check(!V.isValidMerkleProofForTest(hash, root, leaves[i], bad), `tampered merkle proof ${m.hash} ${i}`);
    }
  });
}
for (const suiteName of ['ed25519', 'sm2']) {
  const id = vec.identities[suiteName];
  const suite = V.getSuite(suiteName);
  const ctx = { suite };
  check(hex(V.computeTxHash(ctx, unhex(id.transaction_hex))) === id.tx_hash, `${suiteName} tx hash`);
  check(hex(V.computeSignedTxHash(ctx, unhex(id.transaction_hex))) === id.signed_tx_hash, `${suiteName} signed tx hash`);
  check(hex(suite.hash(unhex(id.public_key)).slice(0, 20)) === id.address, `${suiteName} address`);
  check(suite.verify(unhex(id.public_key), unhex(id.sign_bytes), unhex(id.signature)), `${suiteName} signature`);
  const sig = unhex(id.signature); sig[5] ^= 1;
  check(!suite.verify(unhex(id.public_key), unhex(id.sign_bytes), sig), `${suiteName} tampered signature`);
}
console.log(`ok ${n}`);
