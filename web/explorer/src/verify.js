// In-browser light client: the checks of qilian/sdk/verify.py, recomputed from canonical bytes, trusting only
// the genesis validator keys. Every function returns or throws; a ProofInvalid names the failed step.
import { ed25519 } from '@noble/curves/ed25519.js';
import { weierstrass } from '@noble/curves/abstract/weierstrass.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { sm3 } from './sm3.js';
import { decode, encode, itemEnd, hexToBytes, bytesToHex, concatBytes, equalBytes, CodecError } from './codec.js';

export { decode, encode, hexToBytes, bytesToHex, sm3, sha256 };

export class ProofInvalid extends Error {}

const utf8 = new TextEncoder();
const DOMAIN_VOTE = utf8.encode('QILIAN/VOTE/1\x00');
const PRECOMMIT = 2;
const ZERO32 = new Uint8Array(32);

// --- suites --------------------------------------------------------------------------------------------------

const SM2 = weierstrass({
  p: 0xfffffffeffffffffffffffffffffffffffffffff00000000ffffffffffffffffn,
  n: 0xfffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123n,
  h: 1n,
  a: 0xfffffffeffffffffffffffffffffffffffffffff00000000fffffffffffffffcn,
  b: 0x28e9fa9e9d9f5e344d5a9e4bcf6509a7f39789f515ab8f92ddbcbd414d940e93n,
  Gx: 0x32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7n,
  Gy: 0xbc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0n,
});
const SM2_ID = utf8.encode('1234567812345678'); // GB/T 32918 default distinguishing ID
const toBig = (b) => BigInt('0x' + (bytesToHex(b) || '0'));
const toBytes32 = (x) => hexToBytes(x.toString(16).padStart(64, '0'));

/** SM2 verify of a raw r‖s signature: e = SM3(Z_A ‖ M), Z_A = SM3(ENTL ‖ ID ‖ a ‖ b ‖ G ‖ P). */
export function sm2Verify(pub, msg, sig) {
  try {
    if (pub.length !== 65 || pub[0] !== 4 || sig.length !== 64) return false;
    const P = SM2.fromBytes(pub);
    P.assertValidity();
    const n = SM2.Fn.ORDER;
    const r = toBig(sig.slice(0, 32));
    const s = toBig(sig.slice(32));
    if (r < 1n || r >= n || s < 1n || s >= n) return false;
    const entl = SM2_ID.length * 8;
    const za = sm3(concatBytes(Uint8Array.of(entl >> 8, entl & 0xff), SM2_ID,
      toBytes32(SM2.CURVE().a), toBytes32(SM2.CURVE().b), toBytes32(SM2.CURVE().Gx), toBytes32(SM2.CURVE().Gy),
      pub.slice(1, 33), pub.slice(33, 65)));
    const e = toBig(sm3(concatBytes(za, msg)));
    const t = (r + s) % n;
    if (t === 0n) return false;
    const X = SM2.BASE.multiply(s).add(P.multiply(t));
    if (X.is0()) return false;
    return (e + X.toAffine().x) % n === r;
  } catch {
    return false;
  }
}

export function getSuite(name) {
  if (name === 'ed25519') {
    return {
      name, hashName: 'sha256', hash: (b) => sha256(b),
      verify: (pub, msg, sig) => { try { return ed25519.verify(sig, msg, pub, { zip215: false }); } catch { return false; } },
    };
  }
  if (name === 'sm2') return { name, hashName: 'sm3', hash: (b) => sm3(b), verify: sm2Verify };
  throw new ProofInvalid(`unknown crypto suite ${name}`);
}

// --- genesis ---------------------------------------------------------------------------------------------------

/** The canonical encoding of genesis.json's content, field by field as qilian.types.core.Genesis. */
export function encodeGenesis(g) {
  const p = g.params;
  return encode([
    g.chain_id, g.suite, g.genesis_time_ms,
    g.organisations.map((o) => [o.name, o.members.map((m) => [m.name, hexToBytes(m.public_key), m.roles])]),
    [g.validators.map((v) => [hexToBytes(v.address), hexToBytes(v.public_key), v.power])],
    [p.block_interval_ms, p.create_empty_blocks, p.max_block_txs, p.max_block_bytes, p.max_tx_bytes, p.tx_validity_blocks],
  ]);
}

/** A verification context: the suite, the validator set and hashes derived from a genesis document. */
export function makeContext(genesisDoc) {
  const suite = getSuite(genesisDoc.suite);
  const validators = genesisDoc.validators.map((v) => ({
    address: hexToBytes(v.address), publicKey: hexToBytes(v.public_key), power: v.power,
  }));
  const validatorsHash = suite.hash(encode([validators.map((v) => [v.address, v.publicKey, v.power])]));
  return {
    suite, chainId: genesisDoc.chain_id, validators, validatorsHash,
    totalPower: validators.reduce((n, v) => n + v.power, 0),
    genesisHash: bytesToHex(suite.hash(encodeGenesis(genesisDoc))),
  };
}

// --- Merkle trees (RFC 6962 / 9162) ----------------------------------------------------------------------------

export function merkleRoot(hash, leaves) {
  if (!leaves.length) return hash(new Uint8Array(0));
  let level = leaves.map((d) => hash(concatBytes(Uint8Array.of(0), d)));
  while (level.length > 1) {
    const next = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(hash(concatBytes(Uint8Array.of(1), level[i], level[i + 1])));
    if (level.length % 2) next.push(level[level.length - 1]);
    level = next;
  }
  return level[0];
}

export function isValidMerkleProof(hash, root, leaf, proof) {
  const { index, size } = proof;
  if (!(Number.isInteger(index) && Number.isInteger(size) && index >= 0 && index < size)) return false;
  if (!Array.isArray(proof.path) || proof.path.length > 64) return false;
  let fn = index, sn = size - 1;
  let r = hash(concatBytes(Uint8Array.of(0), leaf));
  for (const hex of proof.path) {
    const p = hexToBytes(hex);
    if (p.length !== 32 || sn === 0) return false;
    if (fn & 1 || fn === sn) {
      r = hash(concatBytes(Uint8Array.of(1), p, r));
      if (!(fn & 1)) while (fn && !(fn & 1)) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = hash(concatBytes(Uint8Array.of(1), r, p));
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 && equalBytes(r, root);
}

// --- sparse Merkle state proofs (qilian/state/tree.py) ---------------------------------------------------------

const bit = (b, d) => (b[d >> 3] >> (7 - (d & 7))) & 1;

export function computeStatePath(hash, namespace, key) {
  const ns = utf8.encode(namespace);
  if (ns.length > 255 || key.length > 1024) throw new ProofInvalid('namespace or key over the limit');
  return hash(concatBytes(Uint8Array.of(ns.length >> 8, ns.length & 0xff), ns, key));
}

/** True iff the proof (wire form [depth, bitmap, siblings, terminal]) shows namespace/key → value under root. */
export function isValidStateProof(hash, root, namespace, key, value, wire) {
  if (!Array.isArray(wire) || wire.length !== 4) return false;
  const [depth, bitmap, siblings, terminal] = wire;
  if (!Number.isInteger(depth) || depth < 0 || depth > 256) return false;
  if (!(bitmap instanceof Uint8Array) || bitmap.length !== (depth + 7) >> 3) return false;
  let set = 0;
  for (let d = 0; d < bitmap.length * 8; d++) {
    if (bit(bitmap, d)) { if (d >= depth) return false; set++; }
  }
  if (!Array.isArray(siblings) || siblings.length !== set) return false;
  if (siblings.some((s) => !(s instanceof Uint8Array) || s.length !== 32 || equalBytes(s, ZERO32))) return false;
  if (depth && !bit(bitmap, depth - 1)) return false;
  if (!Array.isArray(terminal) || (terminal.length !== 0 && terminal.length !== 2)) return false;
  const [leafPath, leafValueHash] = terminal.length ? terminal : [null, null];
  if (leafPath && (leafPath.length !== 32 || !(leafValueHash instanceof Uint8Array) || leafValueHash.length !== 32)) return false;
  const path = computeStatePath(hash, namespace, key);
  let cur;
  if (value !== null) {
    if (!leafPath || !equalBytes(leafPath, path) || !equalBytes(leafValueHash, hash(value))) return false;
    cur = hash(concatBytes(Uint8Array.of(0), path, leafValueHash));
  } else if (!leafPath) {
    cur = ZERO32;
  } else {
    if (equalBytes(leafPath, path)) return false;
    for (let d = 0; d < depth; d++) if (bit(leafPath, d) !== bit(path, d)) return false;
    cur = hash(concatBytes(Uint8Array.of(0), leafPath, leafValueHash));
  }
  let i = siblings.length;
  for (let d = depth - 1; d >= 0; d--) {
    const sib = bit(bitmap, d) ? siblings[--i] : ZERO32;
    cur = bit(path, d) ? hash(concatBytes(Uint8Array.of(1), sib, cur)) : hash(concatBytes(Uint8Array.of(1), cur, sib));
  }
  return i === 0 && equalBytes(cur, root);
}

/** Inverse of qilian.types.codec.to_json_value: {"hex"} → bytes, {"map"} unwrapped, objects → Map. */
export function fromJsonValue(v) {
  if (Array.isArray(v)) return v.map(fromJsonValue);
  if (v && typeof v === 'object') {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === 'hex' && typeof v.hex === 'string') return hexToBytes(v.hex);
    const inner = keys.length === 1 && keys[0] === 'map' && v.map && typeof v.map === 'object' ? v.map : v;
    return new Map(Object.entries(inner).map(([k, x]) => [k, fromJsonValue(x)]));
  }
  return v;
}

// --- headers and commits ---------------------------------------------------------------------------------------

function hexField(doc, name) {
  if (!doc || typeof doc[name] !== 'string') throw new ProofInvalid(`${name} missing`);
  try { return hexToBytes(doc[name]); } catch { throw new ProofInvalid(`${name} is not hex`); }
}

function decodeAs(bytes, what, len) {
  let v;
  try { v = decode(bytes); } catch (e) { throw new ProofInvalid(`malformed ${what}: ${e.message}`); }
  if (!Array.isArray(v) || v.length !== len) throw new ProofInvalid(`malformed ${what}: expected ${len} fields`);
  return v;
}

export function decodeHeader(bytes) {
  const f = decodeAs(bytes, 'header', 14);
  const [version, chainId, height, timeMs, prevBlockId, lastCommitHash, txsRoot, txCount, stateRoot, receiptsRoot, validatorsHash, nextValidatorsHash, proposer, evidenceHash] = f;
  for (const [n, b] of [['txs_root', txsRoot], ['state_root', stateRoot], ['receipts_root', receiptsRoot], ['validators_hash', validatorsHash], ['next_validators_hash', nextValidatorsHash], ['evidence_hash', evidenceHash]]) {
    if (!(b instanceof Uint8Array) || b.length !== 32) throw new ProofInvalid(`malformed header: ${n}`);
  }
  return { version, chainId, height, timeMs, prevBlockId, lastCommitHash, txsRoot, txCount, stateRoot, receiptsRoot, validatorsHash, nextValidatorsHash, proposer, evidenceHash };
}

export function decodeCommit(bytes) {
  const [height, round, blockId, sigs] = decodeAs(bytes, 'commit', 4);
  if (!Array.isArray(sigs)) throw new ProofInvalid('malformed commit signatures');
  return { height, round, blockId, signatures: sigs.map(([validator, signature]) => ({ validator, signature })) };
}

/** Check a commit: > 2/3 of the genesis power signed precommits for blockId at height (each validator once). */
export function checkCommit(ctx, commit, blockId, height) {
  if (commit.height !== height) throw new ProofInvalid(`commit is for height ${commit.height}, expected ${height}`);
  if (!equalBytes(commit.blockId, blockId)) throw new ProofInvalid('commit is for another block');
  const signBytes = concatBytes(DOMAIN_VOTE, encode([ctx.chainId, PRECOMMIT, commit.height, commit.round, commit.blockId]));
  const seen = new Set();
  let power = 0;
  for (const s of commit.signatures) {
    const a = bytesToHex(s.validator);
    const v = ctx.validators.find((x) => bytesToHex(x.address) === a);
    if (!v) throw new ProofInvalid(`commit signature by ${a}, which is not a genesis validator`);
    if (seen.has(a)) throw new ProofInvalid(`two signatures by validator ${a}`);
    seen.add(a);
    if (!ctx.suite.verify(v.publicKey, signBytes, s.signature)) throw new ProofInvalid(`signature of validator ${a.slice(0, 16)}… does not verify`);
    power += v.power;
  }
  if (3 * power <= 2 * ctx.totalPower) throw new ProofInvalid(`commit carries ${power} of ${ctx.totalPower} voting power; more than 2/3 needed`);
  return { signers: seen.size, power };
}

/** Verify a header document against its commit document; returns the decoded header, its id and a step log. */
export function verifyHeader(ctx, headerDoc, commitDoc, steps = []) {
  const raw = hexField(headerDoc, 'encoded');
  const header = decodeHeader(raw);
  const commit = decodeCommit(hexField(commitDoc, 'encoded'));
  if (header.chainId !== ctx.chainId) throw new ProofInvalid(`header is for chain ${header.chainId}, not ${ctx.chainId}`);
  if (!equalBytes(header.validatorsHash, ctx.validatorsHash)) throw new ProofInvalid('header names a validator set other than genesis\'s');
  const blockId = ctx.suite.hash(raw);
  const c = checkCommit(ctx, commit, blockId, header.height);
  steps.push(`header ${header.height}: block ID ${bytesToHex(blockId).slice(0, 16)}… = ${ctx.suite.hashName}(header bytes)`);
  steps.push(`commit: ${c.signers} valid ${ctx.suite.name} precommit signatures, ${c.power}/${ctx.totalPower} power (> 2/3)`);
  return { header, blockId, steps };
}

/** The transaction hash (its ID) from encoded transaction bytes: hash of the body's canonical sub-encoding. */
export function computeTxHash(ctx, txBytes) {
  const v = decodeAs(txBytes, 'transaction', 2);
  if (!Array.isArray(v[0]) || v[0].length !== 7) throw new ProofInvalid('malformed transaction body');
  return ctx.suite.hash(txBytes.slice(1, itemEnd(txBytes, 1)));
}

/** The signed hash from encoded transaction bytes: hash of the whole canonical encoding (body, key, signature).
 *  It is the leaf under txs_root, so a proof covers the exact signature the chain agreed on. */
export function computeSignedTxHash(ctx, txBytes) {
  computeTxHash(ctx, txBytes); // the same shape checks (decodeAs refuses non-canonical bytes)
  return ctx.suite.hash(txBytes);
}

/** Verify a GET /blocks/{h} answer: header+commit, and the transactions' signed hashes' Merkle root against txs_root. */
export function verifyBlock(ctx, doc) {
  if (!doc.commit) throw new ProofInvalid('the block has no commit yet');
  const { header, steps } = verifyHeader(ctx, doc.header, doc.commit);
  const hashes = (doc.txs || []).map((t) => computeSignedTxHash(ctx, hexField(t, 'encoded')));
  if (hashes.length !== header.txCount) throw new ProofInvalid(`${hashes.length} transactions shown; the header says ${header.txCount}`);
  if (!equalBytes(merkleRoot(ctx.suite.hash, hashes), header.txsRoot)) throw new ProofInvalid('transactions (with their signatures) do not hash to the header\'s txs_root');
  steps.push(`${hashes.length} signed transactions hash to txs_root`);
  return { height: header.height, steps };
}

/** Verify a GET /txs/{hash} answer (transaction inclusion; the receipt when its proof is present). The body hash
 *  must be the ID asked for (askedHash, hex, else the answer's own hash); the Merkle leaf is the signed hash. */
export function verifyTx(ctx, resp, askedHash) {
  const txBytes = hexField(resp.tx, 'encoded');
  const txHash = computeTxHash(ctx, txBytes);
  if (askedHash && askedHash.toLowerCase().replace(/^0x/, '') !== bytesToHex(txHash)) throw new ProofInvalid(`the transaction returned is ${bytesToHex(txHash).slice(0, 16)}…, not the one asked for`);
  if (resp.hash && resp.hash !== bytesToHex(txHash)) throw new ProofInvalid('transaction bytes do not hash to the claimed hash');
  const signedHash = computeSignedTxHash(ctx, txBytes);
  const tp = (resp.proof || {}).tx || {};
  const { header, blockId, steps } = verifyHeader(ctx, tp.header, tp.commit);
  const mp = tp.merkle || {};
  if (mp.size !== header.txCount) throw new ProofInvalid(`proof claims ${mp.size} transactions; the header says ${header.txCount}`);
  if (!isValidMerkleProof(ctx.suite.hash, header.txsRoot, signedHash, mp)) throw new ProofInvalid('transaction is not in the block: Merkle proof of its signed bytes does not lead to txs_root');
  steps.push(`transaction ${bytesToHex(txHash).slice(0, 16)}… (signed bytes ${bytesToHex(signedHash).slice(0, 16)}…) is leaf ${mp.index} of ${mp.size} under txs_root`);
  const rp = (resp.proof || {}).receipt;
  let receiptProven = false;
  if (rp) {
    const rbytes = hexField(resp.receipt, 'encoded');
    const receipt = decodeAs(rbytes, 'receipt', 6);
    if (!equalBytes(receipt[0], txHash)) throw new ProofInvalid('receipt is for another transaction');
    const child = verifyHeader(ctx, rp.header, rp.commit, steps);
    if (child.header.height !== header.height + 1 || !equalBytes(child.header.prevBlockId, blockId)) throw new ProofInvalid('receipt header is not the child of the transaction\'s block');
    const rmp = rp.merkle || {};
    if (rmp.index !== mp.index || rmp.size !== header.txCount) throw new ProofInvalid('receipt position does not match the transaction\'s');
    if (!isValidMerkleProof(ctx.suite.hash, child.header.receiptsRoot, rbytes, rmp)) throw new ProofInvalid('receipt is not committed: Merkle proof does not lead to receipts_root');
    steps.push(`receipt is leaf ${rmp.index} under receipts_root of block ${child.header.height}`);
    receiptProven = true;
  } else {
    steps.push('receipt not yet provable (the next block is not committed)');
  }
  return { height: header.height, txHash: bytesToHex(txHash), receiptProven, steps };
}

/** Verify a GET /state/{ns}/{key} answer; returns the proven value (null: proven absent). */
export function verifyState(ctx, resp) {
  const { header, steps } = verifyHeader(ctx, resp.header, resp.commit);
  const key = hexField(resp, 'key');
  const value = resp.value === null || resp.value === undefined ? null : hexField(resp, 'value');
  let wire;
  try { wire = fromJsonValue(resp.proof); } catch (e) { throw new ProofInvalid(`malformed state proof: ${e.message}`); }
  if (typeof resp.namespace !== 'string') throw new ProofInvalid('namespace must be text');
  if (!isValidStateProof(ctx.suite.hash, header.stateRoot, resp.namespace, key, value, wire)) throw new ProofInvalid('state proof does not lead to the header\'s state_root');
  steps.push(value === null ? 'key proven absent under state_root' : `value (${value.length} bytes) proven under state_root`);
  return { value, height: header.height, steps };
}

/** The evidence contract's state key of a digest: canonical ["records", digest]. */
export function computeRecordKey(digest) {
  return encode(['records', digest]);
}

export { CodecError };

// Exposed for the vector tests (tests/js/check_verifier.mjs).
export { merkleRoot as merkleRootForTest, isValidMerkleProof as isValidMerkleProofForTest };
