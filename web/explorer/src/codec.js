// The canonical codec (docs/spec/encoding.md): a strict MessagePack subset. Decoding refuses anything whose
// re-encoding differs from the input, exactly as qilian.types.codec does, so a tampered byte that still parses
// but is not canonical is caught here too.

const MAX_DEPTH = 32;
const utf8 = new TextEncoder();
const utf8d = new TextDecoder('utf-8', { fatal: true });

export class CodecError extends Error {}

/** Decode canonical bytes to JS values: ints as Number (BigInt beyond 2^53), bin as Uint8Array, maps as Map. */
export function decode(bytes) {
  let pos = 0;
  const need = (n) => {
    if (pos + n > bytes.length) throw new CodecError('truncated input');
  };
  const u = (n) => {
    need(n);
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(bytes[pos + i]);
    pos += n;
    return v;
  };
  const num = (v) => (v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v);
  const take = (n) => {
    need(n);
    const out = bytes.slice(pos, pos + n);
    pos += n;
    return out;
  };
  const str = (n) => {
    try {
      return utf8d.decode(take(n));
    } catch {
      throw new CodecError('invalid UTF-8 text');
    }
  };
  function item(depth) {
    if (depth > MAX_DEPTH) throw new CodecError('nested too deeply');
    need(1);
    const b = bytes[pos++];
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xe0) === 0xa0) return str(b & 0x1f);
    if ((b & 0xf0) === 0x90) return arr(b & 0x0f, depth);
    if ((b & 0xf0) === 0x80) return map(b & 0x0f, depth);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return take(Number(u(1)));
      case 0xc5: return take(Number(u(2)));
      case 0xc6: return take(Number(u(4)));
      case 0xcc: return num(u(1));
      case 0xcd: return num(u(2));
      case 0xce: return num(u(4));
      case 0xcf: return num(u(8));
      case 0xd0: return num(BigInt.asIntN(8, u(1)));
      case 0xd1: return num(BigInt.asIntN(16, u(2)));
      case 0xd2: return num(BigInt.asIntN(32, u(4)));
      case 0xd3: return num(BigInt.asIntN(64, u(8)));
      case 0xd9: return str(Number(u(1)));
      case 0xda: return str(Number(u(2)));
      case 0xdb: return str(Number(u(4)));
      case 0xdc: return arr(Number(u(2)), depth);
      case 0xdd: return arr(Number(u(4)), depth);
      case 0xde: return map(Number(u(2)), depth);
      case 0xdf: return map(Number(u(4)), depth);
      default: throw new CodecError(`type byte 0x${b.toString(16)} is outside the canonical subset`);
    }
  }
  function arr(n, depth) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(item(depth + 1));
    return out;
  }
  function map(n, depth) {
    const m = new Map();
    for (let i = 0; i < n; i++) {
      const k = item(depth + 1);
      if (typeof k !== 'string') throw new CodecError('map key must be text');
      m.set(k, item(depth + 1));
    }
    return m;
  }
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new CodecError('empty input');
  const value = item(0);
  if (pos !== bytes.length) throw new CodecError('trailing bytes');
  if (!equalBytes(encode(value), bytes)) throw new CodecError('non-canonical encoding (decode→encode differs)');
  return value;
}

/** The end offset of the item starting at ``pos`` (for slicing a canonical sub-encoding, e.g. a tx body). */
export function itemEnd(bytes, pos) {
  const b = bytes[pos];
  const be = (o, n) => { let v = 0; for (let i = 0; i < n; i++) v = v * 256 + bytes[o + i]; return v; };
  const many = (p, n) => { for (let i = 0; i < n; i++) p = itemEnd(bytes, p); return p; };
  if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) return pos + 1;
  if ((b & 0xe0) === 0xa0) return pos + 1 + (b & 0x1f);
  if ((b & 0xf0) === 0x90) return many(pos + 1, b & 0x0f);
  if ((b & 0xf0) === 0x80) return many(pos + 1, 2 * (b & 0x0f));
  const fixed = { 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8 };
  if (b in fixed) return pos + 1 + fixed[b];
  const lens = { 0xc4: 1, 0xc5: 2, 0xc6: 4, 0xd9: 1, 0xda: 2, 0xdb: 4 };
  if (b in lens) return pos + 1 + lens[b] + be(pos + 1, lens[b]);
  if (b === 0xdc) return many(pos + 3, be(pos + 1, 2));
  if (b === 0xdd) return many(pos + 5, be(pos + 1, 4));
  if (b === 0xde) return many(pos + 3, 2 * be(pos + 1, 2));
  if (b === 0xdf) return many(pos + 5, 2 * be(pos + 1, 4));
  throw new CodecError('bad type byte');
}

/** Canonical bytes of a value (shortest forms; map keys sorted by their UTF-8 bytes). */
export function encode(value) {
  const out = [];
  const push = (...xs) => out.push(...xs);
  const beN = (v, n) => { const r = []; let x = BigInt(v); for (let i = 0; i < n; i++) { r.unshift(Number(x & 0xffn)); x >>= 8n; } return r; };
  const len = (n, fix, fixMax, c8, c16, c32) => {
    if (fix !== null && n <= fixMax) push(fix | n);
    else if (c8 !== null && n < 0x100) push(c8, n);
    else if (n < 0x10000) push(c16, ...beN(n, 2));
    else push(c32, ...beN(n, 4));
  };
  function int(v) {
    const x = BigInt(v);
    if (x >= 0n) {
      if (x < 128n) push(Number(x));
      else if (x < 0x100n) push(0xcc, Number(x));
      else if (x < 0x10000n) push(0xcd, ...beN(x, 2));
      else if (x < 0x100000000n) push(0xce, ...beN(x, 4));
      else push(0xcf, ...beN(x, 8));
    } else if (x >= -32n) push(Number(x) & 0xff);
    else if (x >= -128n) push(0xd0, ...beN(BigInt.asUintN(8, x), 1));
    else if (x >= -32768n) push(0xd1, ...beN(BigInt.asUintN(16, x), 2));
    else if (x >= -2147483648n) push(0xd2, ...beN(BigInt.asUintN(32, x), 4));
    else push(0xd3, ...beN(BigInt.asUintN(64, x), 8));
  }
  function item(v) {
    if (v === null || v === undefined) push(0xc0);
    else if (v === false) push(0xc2);
    else if (v === true) push(0xc3);
    else if (typeof v === 'number') {
      if (!Number.isInteger(v)) throw new CodecError('floats are not encodable');
      int(v);
    } else if (typeof v === 'bigint') int(v);
    else if (typeof v === 'string') {
      const b = utf8.encode(v);
      len(b.length, 0xa0, 31, 0xd9, 0xda, 0xdb);
      for (const x of b) out.push(x);
    } else if (v instanceof Uint8Array) {
      len(v.length, null, 0, 0xc4, 0xc5, 0xc6);
      for (const x of v) out.push(x);
    } else if (Array.isArray(v)) {
      len(v.length, 0x90, 15, null, 0xdc, 0xdd);
      v.forEach(item);
    } else if (v instanceof Map) {
      const keys = [...v.keys()].map((k) => [utf8.encode(k), k]).sort((a, b) => compareBytes(a[0], b[0]));
      len(keys.length, 0x80, 15, null, 0xde, 0xdf);
      for (const [, k] of keys) { item(k); item(v.get(k)); }
    } else throw new CodecError(`cannot encode ${typeof v}`);
  }
  item(value);
  return Uint8Array.from(out);
}

export function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

export function equalBytes(a, b) {
  return a.length === b.length && compareBytes(a, b) === 0;
}

export function hexToBytes(hex) {
  if (typeof hex !== 'string' || hex.length % 2 || /[^0-9a-fA-F]/.test(hex)) throw new CodecError('not hex');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
