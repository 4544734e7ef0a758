// In-browser light client: the checks of qilian/sdk/verify.py, recomputed from canonical bytes, trusting only
// the genesis validator keys (and the validator-set changes followed from them, see "validator sets" below).
// Every function returns or throws; a ProofInvalid names the failed step.
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

/** A verification context: the suite, the genesis validator set and hashes derived from a genesis document.
 * ``trusted`` holds the validator sets verified so far (genesis's from height 1, then each change followed through
 * a validator path by ``extendTrust``); the page keeps one context, so each change is verified once. */
export function makeContext(genesisDoc) {
  const suite = getSuite(genesisDoc.suite);
  const genesisSet = makeValidatorSet(suite, genesisDoc.validators.map((v) => ({
    address: hexToBytes(v.address), publicKey: hexToBytes(v.public_key), power: v.power,
  })));
  return {
    suite, chainId: genesisDoc.chain_id, genesisSet,
    validators: genesisSet.validators, validatorsHash: genesisSet.hash, totalPower: genesisSet.totalPower,
    genesisHash: bytesToHex(suite.hash(encodeGenesis(genesisDoc))),
    trusted: { spans: [{ from: 1, set: genesisSet }], to: 1, path: null },
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

/** Check a commit: > 2/3 of ``vset``'s power (default: genesis's) signed precommits for blockId at height, each
 * validator once; a signer outside the set is refused, not ignored (qilian.execution.block.check_commit). */
export function checkCommit(ctx, commit, blockId, height, vset = ctx.genesisSet) {
  if (commit.height !== height) throw new ProofInvalid(`commit is for height ${commit.height}, expected ${height}`);
  if (!equalBytes(commit.blockId, blockId)) throw new ProofInvalid('commit is for another block');
  const signBytes = computeVoteSignBytes(ctx, commit);
  const seen = new Set();
  let power = 0;
  for (const s of commit.signatures) {
    const a = bytesToHex(s.validator);
    const v = vset.byAddress.get(a);
    if (!v) throw new ProofInvalid(`commit signature by ${a}, which is not a validator of ${vset === ctx.genesisSet ? 'genesis' : 'the trusted set'}`);
    if (seen.has(a)) throw new ProofInvalid(`two signatures by validator ${a}`);
    seen.add(a);
    if (!ctx.suite.verify(v.publicKey, signBytes, s.signature)) throw new ProofInvalid(`signature of validator ${a.slice(0, 16)}… does not verify`);
    power += v.power;
  }
  if (3 * power <= 2 * vset.totalPower) throw new ProofInvalid(`commit carries ${power} of ${vset.totalPower} voting power; more than 2/3 needed`);
  return { signers: seen.size, power };
}

function computeVoteSignBytes(ctx, commit) {
  return concatBytes(DOMAIN_VOTE, encode([ctx.chainId, PRECOMMIT, commit.height, commit.round, commit.blockId]));
}

function decodeHeaderCommit(ctx, headerDoc, commitDoc) {
  const raw = hexField(headerDoc, 'encoded');
  const header = decodeHeader(raw);
  const commit = decodeCommit(hexField(commitDoc, 'encoded'));
  if (header.chainId !== ctx.chainId) throw new ProofInvalid(`header is for chain ${header.chainId}, not ${ctx.chainId}`);
  return { header, commit, blockId: ctx.suite.hash(raw) };
}

// --- validator sets (governance changes; qilian/sdk/verify.py verify_validator_path) ---------------------------
//
// A change decided in block h signs from h+2; header h+1 names it in next_validators_hash. The page follows the
// sets from genesis through a validator path (GET /gov/validators/path?to=H): one entry per height whose signing
// set differs from the previous height's, linked to the set trusted before it sequentially (``parent``: the
// header before, signed by the trusted set, names the new set) or by skipping (> 1/3 of the trusted set's power
// signed the new height's commit: at least one honest validator vouches for it). The path is fetched only when
// a header names a set the page does not trust yet, and verified sets are kept in the context.

const PATH_TYPE = 'qilian-validator-path';
const PATH_VERSION = 1;
const MAX_SET_SIZE = 1024; // as ValidatorSet's wire limit
const MAX_PATH_ENTRIES = 100000;

/** Raised by verifyHeader for a header beyond the followed path whose set is not trusted yet: the caller fetches
 * the path to ``height`` (extendTrust) and verifies again. Still a ProofInvalid if nobody does. */
export class NeedValidatorPath extends ProofInvalid {
  constructor(height) {
    super(`header ${height} names a validator set other than the trusted one; give the validator path up to this height (GET /gov/validators/path?to=${height})`);
    this.height = height;
  }
}

/** A validator set as the verifier keeps it: entries in order, its header hash, total power, address lookup. */
export function makeValidatorSet(suite, validators) {
  const hash = suite.hash(encode([validators.map((v) => [v.address, v.publicKey, v.power])]));
  return {
    validators, hash, totalPower: validators.reduce((n, v) => n + v.power, 0),
    byAddress: new Map(validators.map((v) => [bytesToHex(v.address), v]).reverse()), // first entry wins, as get_by_address
  };
}

/** A validator set from its canonical bytes (qilian.types.core.ValidatorSet), shape-checked field by field. */
export function decodeValidatorSet(suite, bytes, where = 'validator set') {
  const [list] = decodeAs(bytes, where, 1);
  if (!Array.isArray(list) || list.length > MAX_SET_SIZE) throw new ProofInvalid(`${where}: malformed validator set`);
  const validators = list.map((v) => {
    if (!Array.isArray(v) || v.length !== 3) throw new ProofInvalid(`${where}: malformed validator`);
    const [address, publicKey, power] = v;
    if (!(address instanceof Uint8Array) || address.length !== 20 || !(publicKey instanceof Uint8Array) || publicKey.length > 65 ||
        !Number.isSafeInteger(power) || power < 0) throw new ProofInvalid(`${where}: malformed validator`);
    return { address, publicKey, power };
  });
  return makeValidatorSet(suite, validators);
}

/** The trusted span ({from, set}) covering ``height``: the last change at or below it. */
export function getTrustedSpan(ctx, height) {
  let best = ctx.trusted.spans[0];
  for (const span of ctx.trusted.spans) if (span.from <= height) best = span;
  return best;
}

/** Power of ``vset``'s validators whose precommit signatures in ``commit`` verify (each once; others ignored). */
export function computeTrustedPower(ctx, vset, commit) {
  const signBytes = computeVoteSignBytes(ctx, commit);
  const seen = new Set();
  let power = 0;
  for (const s of commit.signatures) {
    const a = bytesToHex(s.validator);
    const v = vset.byAddress.get(a);
    if (v && !seen.has(a) && ctx.suite.verify(v.publicKey, signBytes, s.signature)) {
      seen.add(a);
      power += v.power;
    }
  }
  return power;
}

function checkSigned(ctx, vset, hc, what) {
  try {
    return checkCommit(ctx, hc.commit, hc.blockId, hc.header.height, vset);
  } catch (e) {
    if (e instanceof ProofInvalid) throw new ProofInvalid(`commit does not prove ${what}: ${e.message}`);
    throw e;
  }
}

/** Follow a validator path (qilian-validator-path/1) from genesis; returns the trusted spans. ``known`` are spans
 * verified earlier (from a shorter path): entries at their positions must repeat them and are not re-checked, so
 * following a growing chain costs only its new changes; a path that contradicts or omits one is refused. */
export function verifyValidatorPath(ctx, path, known = [ctx.trusted.spans[0]]) {
  if (!path || typeof path !== 'object' || path.type !== PATH_TYPE || path.version !== PATH_VERSION) {
    throw new ProofInvalid(`not a validator path (${PATH_TYPE} version ${PATH_VERSION})`);
  }
  const entries = path.entries;
  if (!Array.isArray(entries) || entries.length > MAX_PATH_ENTRIES) throw new ProofInvalid('validator path has no entries');
  const spans = [known[0]];
  entries.forEach((e, i) => {
    const where = `validator path entry ${i}`;
    try {
      followEntry(ctx, e, where, known, spans);
    } catch (x) {
      if (x instanceof ProofInvalid && !x.message.startsWith(where)) throw new ProofInvalid(`${where}: ${x.message}`);
      throw x;
    }
  });
  if (spans.length < known.length) {
    throw new ProofInvalid(`the validator path omits the change at height ${known[spans.length].from} verified earlier`);
  }
  return spans;
}

/** One entry of a validator path: checked against the last trusted span, then appended to ``spans``. */
function followEntry(ctx, e, where, known, spans) {
  if (!e || typeof e !== 'object') throw new ProofInvalid(`${where} is malformed`);
  const vset = decodeValidatorSet(ctx.suite, hexField(e, 'validators'), `${where}: validator set`);
  const hc = decodeHeaderCommit(ctx, e.header, e.commit);
  const h = hc.header.height;
  const prior = known[spans.length];
  if (prior) {
    if (prior.from !== h || !equalBytes(prior.set.hash, vset.hash)) {
      throw new ProofInvalid(`${where}: contradicts the validator set verified earlier from height ${prior.from}`);
    }
    spans.push(prior);
    return;
  }
  const { from: first, set: trusted } = spans[spans.length - 1];
  if (h <= first) throw new ProofInvalid(`${where}: height ${h} does not follow the trusted set of height ${first}`);
  if (!equalBytes(hc.header.validatorsHash, vset.hash) || !vset.validators.length) {
    throw new ProofInvalid(`${where}: the header at height ${h} is not signed by the given set`);
  }
  checkSigned(ctx, vset, hc, `${where} (height ${h})`);
  if (e.parent !== undefined && e.parent !== null) {
    if (typeof e.parent !== 'object') throw new ProofInvalid(`${where}: malformed parent`);
    const p = decodeHeaderCommit(ctx, e.parent.header, e.parent.commit);
    if (p.header.height !== h - 1 || !equalBytes(hc.header.prevBlockId, p.blockId)) {
      throw new ProofInvalid(`${where}: parent is not the header before height ${h}`);
    }
    if (!equalBytes(p.header.validatorsHash, trusted.hash)) {
      throw new ProofInvalid(`${where}: parent at height ${p.header.height} is not signed by the trusted set`);
    }
    checkSigned(ctx, trusted, p, `${where} parent`);
    if (!equalBytes(p.header.nextValidatorsHash, hc.header.validatorsHash)) {
      throw new ProofInvalid(`${where}: parent at height ${p.header.height} names another next validator set`);
    }
  } else if (3 * computeTrustedPower(ctx, trusted, hc.commit) <= trusted.totalPower) {
    throw new ProofInvalid(`${where}: at most 1/3 of the trusted set's power signed height ${h}; the path needs the parent header there (sequential link)`);
  }
  spans.push({ from: h, set: vset });
}

/** Take a validator path fetched up to height ``to`` into the context's trusted sets (verified first; a path not
 * beyond what the context already follows changes nothing). */
export function extendTrust(ctx, path, to) {
  if (!Number.isSafeInteger(to) || to <= ctx.trusted.to) return ctx.trusted;
  const spans = verifyValidatorPath(ctx, path, ctx.trusted.spans);
  if (spans[spans.length - 1].from > to) throw new ProofInvalid(`the validator path goes beyond the requested height ${to}`);
  ctx.trusted = { spans, to, path };
  return ctx.trusted;
}

/** Verify a header document against its commit document, signed by the set trusted at its height; returns the
 * decoded header, its id and a step log. */
export function verifyHeader(ctx, headerDoc, commitDoc, steps = []) {
  const { header, commit, blockId } = decodeHeaderCommit(ctx, headerDoc, commitDoc);
  const span = getTrustedSpan(ctx, header.height);
  if (!equalBytes(header.validatorsHash, span.set.hash)) {
    if (header.height > ctx.trusted.to) throw new NeedValidatorPath(header.height);
    throw new ProofInvalid(`header ${header.height} names a validator set other than the one trusted from height ${span.from}${span.from === 1 ? ' (genesis\'s)' : ''}`);
  }
  const c = checkCommit(ctx, commit, blockId, header.height, span.set);
  const changes = ctx.trusted.spans.indexOf(span);
  steps.push(`header ${header.height}: block ID ${bytesToHex(blockId).slice(0, 16)}… = ${ctx.suite.hashName}(header bytes)`);
  steps.push(`commit: ${c.signers} valid ${ctx.suite.name} precommit signatures, ${c.power}/${span.set.totalPower} power (> 2/3) of ${
    changes ? `the validator set of height ${span.from} (followed from genesis through ${changes} verified change${changes > 1 ? 's' : ''})` : 'the genesis validator set'}`);
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
