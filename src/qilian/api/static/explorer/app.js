// The Qilian explorer: plain ES module, no framework, no CDN. Pages are rendered from the node's JSON API;
// anything worth trusting is re-checked in the page by verify.js (bundled crypto, see docs/explorer.md).
import * as V from './verify.js';

const $main = document.getElementById('main');
const MAX_FEED = 50; // live events kept on the dashboard
const CHART_BLOCKS = 60; // blocks in the TPS chart
const PAGE = 20;

let ctxPromise = null; // verification context from /genesis
let genesisDoc = null;
let status = null;
const feed = [];
let renderSeq = 0;

// --- helpers -------------------------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

async function api(path, opts) {
  const r = await fetch(path, opts);
  let body = null;
  try { body = await r.json(); } catch { /* not JSON */ }
  if (!r.ok) {
    const e = new Error(body && body.message ? `${body.error}: ${body.message}` : `HTTP ${r.status}`);
    e.status = r.status;
    e.code = body && body.error;
    throw e;
  }
  return body;
}

const short = (s, n = 12) => (s && s.length > 2 * n ? `${s.slice(0, n)}…${s.slice(-4)}` : s || '');
const link = (href, text, cls = 'mono') => h('a', { href, class: cls }, text);
const blockLink = (n) => link(`#/block/${n}`, String(n), '');
const txLink = (t) => link(`#/tx/${t}`, short(t));
const accountLink = (a) => link(`#/account/${a}`, short(a, 8));
const time = (ms) => new Date(ms).toLocaleString();
const pill = (s) => h('span', { class: `pill ${s}` }, s);
/** Hex of a value that may be bytes, {"hex"} (API JSON) or already hex text (e.g. ctx.tx_hash). */
const asHex = (v) => (v instanceof Uint8Array ? V.bytesToHex(v) : v && typeof v === 'object' ? v.hex : String(v));
const json = (v) => h('pre', { class: 'mono' }, JSON.stringify(v, null, 2));

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function table(headers, rows) {
  return h('table', {}, h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))
      : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, 'nothing yet'))));
}

function getContext() {
  if (!ctxPromise) {
    ctxPromise = api('/genesis').then((g) => {
      genesisDoc = g;
      const ctx = V.makeContext(g);
      document.getElementById('genesis-hash').textContent = `genesis ${short(ctx.genesisHash, 10)}, ${g.suite}`;
      // Trust on first use: the genesis hash seen first for a chain ID is pinned in this browser.
      const pinKey = `qilian.genesis.${g.chain_id}`;
      const pinned = localStorage.getItem(pinKey);
      if (!pinned) localStorage.setItem(pinKey, ctx.genesisHash);
      else if (pinned !== ctx.genesisHash) {
        ctx.pinMismatch = true;
        document.getElementById('trust').textContent = `This node serves a genesis (${short(ctx.genesisHash)}) other than the one pinned in this browser for ${g.chain_id} (${short(pinned)}): nothing here can be verified.`;
      }
      return ctx;
    });
  }
  return ctxPromise;
}

const MAX_PATH_ROUNDS = 8; // validator-path fetches per check: a check touches a few heights, each may need one

/** Run a check; when a header names a validator set the page does not trust yet, fetch the validator path up to
 * that height (GET /gov/validators/path), follow it from the sets already verified (V.extendTrust keeps them in
 * the context, so each change is checked once per page) and run the check again. */
async function runCheck(ctx, check) {
  for (let round = 0; ; round++) {
    try {
      return await check(ctx);
    } catch (e) {
      if (!(e instanceof V.NeedValidatorPath) || round >= MAX_PATH_ROUNDS) throw e;
      V.extendTrust(ctx, await api(`/gov/validators/path?to=${e.height}`), e.height);
    }
  }
}

/** A "Verify" button whose verdict (green/red) comes from re-checking ``doc`` in the page. */
function verifyControl(label, check) {
  const out = h('div', { class: 'verdict', 'data-testid': 'verdict', 'data-verdict': 'pending', hidden: true });
  const run = async () => {
    out.hidden = false;
    out.dataset.verdict = 'pending';
    out.replaceChildren(h('span', { class: 'muted' }, 'verifying…'));
    try {
      const ctx = await getContext();
      if (ctx.pinMismatch) throw new V.ProofInvalid('genesis differs from the pinned one');
      const res = await runCheck(ctx, check);
      out.dataset.verdict = 'ok';
      out.replaceChildren(h('b', {}, `✔ ${label} verified`), h('ul', {}, res.steps.map((s) => h('li', {}, s))));
    } catch (e) {
      out.dataset.verdict = 'bad';
      out.replaceChildren(h('b', {}, `✘ ${label} does NOT verify`), h('div', {}, e.message || String(e)));
    }
  };
  return h('div', { class: 'verify' }, h('button', { class: 'primary', 'data-testid': 'verify', onclick: run }, `Verify ${label}`), out);
}

// --- pages ---------------------------------------------------------------------------------------------------

async function pageDashboard() {
  const [st, blocks, vals] = await Promise.all([api('/status'), api(`/blocks?limit=${CHART_BLOCKS}`), api('/validators')]);
  status = st;
  const items = blocks.items;
  let avg = '–', tps = '–';
  if (items.length > 1) {
    const span = (items[0].time_ms - items[items.length - 1].time_ms) / 1000;
    avg = `${(span / (items.length - 1)).toFixed(2)} s`;
    const txs = items.slice(0, -1).reduce((n, b) => n + b.tx_count, 0);
    tps = span > 0 ? (txs / span).toFixed(1) : '0';
  }
  const card = (k, v, id) => h('div', { class: 'card' }, h('div', { class: 'k' }, k), h('div', { class: 'v', id }, v));
  const canvas = h('canvas', { width: 1100, height: 140, 'aria-label': 'transactions per second over recent blocks' });
  const feedEl = h('div', { class: 'feed', id: 'feed' }, feedLines());
  const view = h('div', {},
    h('h1', {}, 'Dashboard'),
    h('div', { class: 'cards' },
      card('height', String(st.height), 'dash-height'), card('avg block time', avg), card(`TPS (last ${items.length} blocks)`, tps),
      card('mempool', String(st.mempool_size)), card('peers', String((st.peers || []).length)),
      card('suite', st.suite), card('txs since start', String(st.txs_committed ?? '–'))),
    h('h2', {}, 'Transactions per second over time'), canvas,
    h('div', { class: 'row' },
      h('div', {}, h('h2', {}, 'Latest blocks'),
        table(['height', 'time', 'txs', 'proposer', 'round'], items.slice(0, 10).map((b) =>
          [blockLink(b.height), time(b.time_ms), String(b.tx_count), accountLink(b.proposer), String(b.round)]))),
      h('div', {}, h('h2', {}, 'Live events'), feedEl)),
    h('h2', {}, `Validators (signatures in the last ${vals.window} blocks)`),
    table(['address', 'organisation', 'power', 'last signed', 'signed'], vals.validators.map((v) =>
      [accountLink(v.address), v.organisation || '–', String(v.power), v.last_signed ? blockLink(v.last_signed) : '–',
        `${v.signed_in_window}/${vals.window}`])),
    h('h2', {}, 'Organisations'),
    table(['organisation', 'members'], vals.organisations.map((o) =>
      [o.name, h('span', {}, o.members.map((m) => h('span', {}, accountLink(m.address), ` ${m.name} (${m.roles.join(', ')})  `)))])));
  drawTps(canvas, items.slice().reverse());
  view.append(await appsSection());
  return view;
}

function feedLines() {
  return feed.length ? feed.map((m) => h('div', {}, m.type === 'block'
    ? h('span', {}, 'block ', blockLink(m.height), ` · ${m.tx_count} txs`)
    : h('span', {}, `${m.source}.${m.name} `, txLink(m.tx_hash), ` @ ${m.height}`)))
    : [h('span', { class: 'muted' }, 'waiting for blocks…')];
}

function drawTps(canvas, blocks) {
  const g = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height;
  g.clearRect(0, 0, W, H);
  const pts = [];
  for (let i = 1; i < blocks.length; i++) {
    const dt = (blocks[i].time_ms - blocks[i - 1].time_ms) / 1000;
    pts.push(dt > 0 ? blocks[i].tx_count / dt : 0);
  }
  const max = Math.max(1, ...pts);
  const bw = W / Math.max(1, pts.length);
  g.fillStyle = '#b3261e';
  pts.forEach((v, i) => { const bh = (v / max) * (H - 20); g.fillRect(i * bw + 1, H - bh, Math.max(1, bw - 2), bh); });
  g.fillStyle = '#6b7385';
  g.font = '12px sans-serif';
  g.fillText(`max ${max.toFixed(1)} tx/s`, 6, 14);
}

async function pageBlocks(before) {
  const doc = await api(`/blocks?limit=${PAGE}${before ? `&before=${before}` : ''}`);
  return h('div', {}, h('h1', {}, 'Blocks'),
    table(['height', 'block ID', 'time', 'txs', 'proposer', 'round', 'signatures'], doc.items.map((b) =>
      [blockLink(b.height), link(`#/block/${b.height}`, short(b.block_id)), time(b.time_ms), String(b.tx_count),
        accountLink(b.proposer), String(b.round), String(b.signatures)])),
    h('div', { class: 'pager' }, doc.next_before ? h('a', { href: `#/blocks/${doc.next_before}` }, 'older →') : null));
}

async function pageBlock(height) {
  const doc = await api(`/blocks/${encodeURIComponent(height)}`);
  const hd = doc.header;
  const hashes = await api(`/blocks/${hd.height}/tx_hashes`).catch(() => ({ statuses: [] }));
  return h('div', {}, h('h1', {}, `Block ${hd.height}`),
    h('div', { class: 'pager' }, hd.height > 1 ? blockLink(hd.height - 1) : null, ' ← → ', h('a', { href: `#/block/${hd.height + 1}` }, String(hd.height + 1))),
    verifyControl('block', (ctx) => V.verifyBlock(ctx, doc)),
    kv([['block ID', h('span', { class: 'mono' }, hd.block_id)], ['time', time(hd.time_ms)], ['transactions', String(hd.tx_count)],
      ['proposer', accountLink(hd.proposer)], ['previous', hd.height > 1 ? link(`#/block/${hd.height - 1}`, hd.prev_block_id) : '–'],
      ['txs root', h('span', { class: 'mono' }, hd.txs_root)], ['state root', h('span', { class: 'mono' }, hd.state_root)],
      ['receipts root', h('span', { class: 'mono' }, hd.receipts_root)], ['validators hash', h('span', { class: 'mono' }, hd.validators_hash)],
      ['evidence root', h('span', { class: 'mono' }, hd.evidence_hash)],
      ['decided in round', doc.commit ? String(doc.commit.round) : '–']]),
    h('h2', {}, 'Transactions'),
    table(['#', 'hash', 'sender', 'to', 'method', 'status'], doc.txs.map((t, i) =>
      [String(i), txLink(t.hash), accountLink(t.sender_address), targetLink(t.to), t.method, pill(hashes.statuses[i] || '?')])),
    (doc.evidence || []).length ? h('div', {}, h('h2', {}, 'Equivocation evidence'),
      table(['validator', 'height', 'round', 'kind', 'block IDs voted for'], doc.evidence.map((e) =>
        [accountLink(e.validator), blockLink(e.height), String(e.round), e.kind,
          h('span', { class: 'mono' }, e.block_ids.map((b) => (b ? short(b, 16) : 'nil')).join(' / '))]))) : null,
    h('h2', {}, 'Commit signatures'),
    table(['validator', 'signature'], (doc.commit ? doc.commit.signatures : []).map((s) =>
      [accountLink(s.validator), h('span', { class: 'mono' }, short(s.signature, 24))])));
}

function targetLink(to) {
  return /^[0-9a-f]{40}$/.test(to) || to === 'evidence' ? link(`#/contract/${to}`, short(to, 8)) : h('span', {}, to);
}

async function pageTx(hash) {
  let doc;
  try {
    doc = await api(`/txs/${encodeURIComponent(hash)}`);
  } catch (e) {
    if (e.code === 'pending') return h('div', {}, h('h1', {}, 'Transaction'), h('p', {}, 'In the mempool, not yet committed.'));
    throw e;
  }
  const t = doc.tx, r = doc.receipt;
  return h('div', {}, h('h1', {}, 'Transaction'),
    verifyControl('transaction', (ctx) => V.verifyTx(ctx, doc, hash)),
    kv([['hash', h('span', { class: 'mono' }, doc.hash)], ['block', h('span', {}, blockLink(doc.height), ` #${doc.index}`)],
      ['sender', accountLink(t.sender_address)], ['to', targetLink(t.to)], ['method', t.method],
      ['status', pill(r.status)], ['error', r.error || '–'], ['fuel used', String(r.fuel_used)],
      ['nonce', String(t.nonce)], ['expires at', String(t.expires_at)]]),
    h('h2', {}, 'Arguments'), json(t.args),
    h('h2', {}, 'Result'), json(r.result),
    h('h2', {}, `Events (${r.events.length})`),
    table(['source', 'name', 'data'], r.events.map((e) => [e.source, e.name, h('span', { class: 'mono' }, JSON.stringify(e.data))])));
}

async function pageAccount(addr, cursor) {
  const doc = await api(`/accounts/${encodeURIComponent(addr)}/txs?limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
  return h('div', {}, h('h1', {}, 'Account ', h('span', { class: 'mono' }, addr)),
    h('p', { class: 'muted' }, `Transactions sent by this address or targeting it (indexed to height ${doc.indexed_height}).`),
    table(['block', 'hash', 'sender', 'to', 'method', 'status', 'fuel'], doc.items.map((t) =>
      [blockLink(t.height), txLink(t.hash), accountLink(t.sender), targetLink(t.target), t.method, pill(t.status), String(t.fuel_used)])),
    h('div', { class: 'pager' }, doc.next_cursor ? h('a', { href: `#/account/${addr}/${doc.next_cursor}` }, 'older →') : null));
}

async function pageContracts(cursor) {
  const doc = await api(`/contracts?limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
  return h('div', {}, h('h1', {}, 'Contracts'),
    table(['name', 'address', 'version', 'deployer', 'deployed'], doc.items.map((c) =>
      [c.name, link(`#/contract/${c.address}`, short(c.address, 8)), String(c.version), c.deployer ? accountLink(c.deployer) : 'genesis',
        c.deployed_height ? blockLink(c.deployed_height) : 'genesis'])),
    h('div', { class: 'pager' }, doc.next_cursor ? h('a', { href: `#/contracts/${doc.next_cursor}` }, 'older →') : null));
}

async function pageContract(addr) {
  const [c, vs, evs] = await Promise.all([api(`/contracts/${encodeURIComponent(addr)}`),
    api(`/contracts/${encodeURIComponent(addr)}/versions`).catch(() => ({ versions: [] })),
    api(`/events?source=${encodeURIComponent(addr)}&limit=${PAGE}`).catch(() => ({ items: [] }))]);
  const method = h('select', { name: 'method' }, c.exports.map((m) => h('option', { value: m }, m)));
  const args = h('textarea', { name: 'args', placeholder: '[] — JSON; bytes as {"hex": "…"}' }, '[]');
  const out = h('div', { 'data-testid': 'query-result' });
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      out.replaceChildren(h('span', { class: 'muted' }, 'querying…'));
      try {
        const res = await api(`/contracts/${encodeURIComponent(addr)}/query`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ method: method.value, args: JSON.parse(args.value || '[]') }),
        });
        out.replaceChildren(json(res));
      } catch (e) { out.replaceChildren(h('p', { class: 'err' }, e.message)); }
    },
  }, h('div', { class: 'row' }, h('label', {}, 'method ', method), h('label', {}, 'args ', args)), h('button', { type: 'submit' }, 'Query (read-only)'));
  return h('div', {}, h('h1', {}, 'Contract ', h('span', { class: 'mono' }, addr)),
    kv([['deployer', c.deployer ? accountLink(c.deployer) : 'genesis'], ['version', String(c.version)], ['methods', c.exports.join(', ')]]),
    h('h2', {}, 'Query'), form, out,
    h('h2', {}, 'Versions'),
    table(['version', 'height', 'transaction', 'deployer'], vs.versions.map((v) =>
      [String(v.version), v.height ? blockLink(v.height) : 'genesis', v.tx_hash ? txLink(v.tx_hash) : '–', v.deployer ? accountLink(v.deployer) : '–'])),
    h('h2', {}, 'Source (Python)'), h('pre', { class: 'mono', 'data-testid': 'source' }, c.source),
    h('h2', {}, 'Recent events'),
    table(['block', 'name', 'data', 'transaction'], evs.items.map((e) =>
      [blockLink(e.height), e.name, h('span', { class: 'mono' }, JSON.stringify(e.data)), txLink(e.tx_hash)])),
    h('p', {}, link(`#/account/${addr}`, 'all transactions to this contract →', '')));
}

/** Bytes shown from the hex the verifier checks (never from the node's readable copy): text if UTF-8. */
function showBytes(hex) {
  const b = V.hexToBytes(hex);
  try { return new TextDecoder('utf-8', { fatal: true }).decode(b); } catch { return h('span', { class: 'mono' }, hex); }
}

async function pageState(ns, key) {
  const nsIn = h('input', { type: 'text', name: 'ns', value: ns || 'kv', placeholder: 'namespace (kv, c:evidence, …)' });
  const keyIn = h('input', { type: 'text', name: 'key', value: key || '', placeholder: 'key (text)' });
  const form = h('form', { onsubmit: (e) => { e.preventDefault(); location.hash = `#/state/${encodeURIComponent(nsIn.value)}/${encodeURIComponent(keyIn.value)}`; } },
    'namespace ', nsIn, ' key ', keyIn, ' ', h('button', { type: 'submit' }, 'Read'));
  const parts = [h('h1', {}, 'State'), form];
  if (ns && key) {
    const doc = await api(`/state/${encodeURIComponent(ns)}/${encodeURIComponent(key)}`);
    parts.push(verifyControl('state value', (ctx) => V.verifyState(ctx, doc)),
      kv([['namespace', doc.namespace], ['key (hex)', h('span', { class: 'mono' }, doc.key)],
        ['value', doc.value === null ? h('i', {}, 'absent') : showBytes(doc.value)],
        ['as of', h('span', {}, 'state after block ', blockLink(doc.state_height), ', committed in header ', blockLink(doc.header.height))],
        ['state root', h('span', { class: 'mono' }, doc.header.state_root)]]));
  }
  return h('div', {}, parts);
}

async function pageEvidence() {
  const ctx = await getContext();
  const result = h('div', { 'data-testid': 'evidence-result' });
  const input = h('input', { type: 'file', 'data-testid': 'evidence-file' });
  const drop = h('div', { class: 'drop' }, h('p', {}, `Drop a file here (or choose one). Its ${ctx.suite.hashName.toUpperCase()} digest is computed in this page — the file never leaves your machine.`), input);
  const handle = async (file) => {
    result.replaceChildren(h('span', { class: 'muted' }, 'hashing…'));
    const bytes = new Uint8Array(await file.arrayBuffer());
    const digest = ctx.suite.hash(bytes);
    const dhex = V.bytesToHex(digest);
    const q = await api('/contracts/evidence/query', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: 'get', args: [{ hex: dhex }] }) });
    const head = kv([['file', `${file.name} (${bytes.length} bytes)`], [`${ctx.suite.hashName} digest`, h('span', { class: 'mono', 'data-testid': 'digest' }, dhex)]]);
    if (!q.ok || q.result === null) {
      result.replaceChildren(head, h('p', { 'data-testid': 'evidence-status' }, 'Not registered on this chain.'));
      return;
    }
    const rec = q.result;
    const txHash = asHex(rec.tx_hash);
    const keyHex = V.bytesToHex(V.computeRecordKey(digest));
    let cert = null;
    const check = async (c) => {
      const [tx, st] = await Promise.all([api(`/txs/${txHash}`), api(`/state/c:evidence/${keyHex}?encoding=hex`)]);
      const vt = V.verifyTx(c, tx, txHash);
      if (!vt.receiptProven) throw new V.ProofInvalid('the registration\'s receipt is not provable yet; try again after the next block');
      const body = V.decode(V.hexToBytes(tx.tx.encoded))[0];
      if (body[4] !== 'evidence' || body[5] !== 'register' || V.bytesToHex(body[6][0]) !== dhex) throw new V.ProofInvalid('the transaction is not a registration of this digest');
      const vs = V.verifyState(c, st);
      if (!vs.value) throw new V.ProofInvalid('the state proof shows no record');
      const stored = V.decode(vs.value);
      if (V.bytesToHex(stored.get('digest')) !== dhex || asHex(stored.get('tx_hash')) !== txHash) throw new V.ProofInvalid('the proven record is for another digest or transaction');
      // The owner organisation is proven by the signing key's membership entry, never taken from the record.
      const senderHex = V.bytesToHex(body[1]);
      const mem = await api(`/state/sys:member/${senderHex}?encoding=hex`);
      const vm = V.verifyState(c, mem);
      if (!vm.value) throw new V.ProofInvalid('the key that signed the registration is not a member of the chain');
      const member = V.decode(vm.value);
      if (!Array.isArray(member) || member.length !== 3 || stored.get('owner_org') !== member[0]) throw new V.ProofInvalid(`the record names owner ${stored.get('owner_org')} but the registration was signed by a key of ${member[0]}`);
      cert = { type: 'qilian-evidence-certificate', version: 2, chain_id: genesisDoc.chain_id, digest: dhex, genesis: genesisDoc, tx, state: st, member: mem };
      // After a validator-set change the proofs need the path from genesis (certificate version 3).
      if (c.trusted.path) Object.assign(cert, { version: 3, validator_path: c.trusted.path });
      dl.disabled = false;
      return { steps: [...vt.steps, ...vs.steps, 'record in state matches the registration', ...vm.steps, `signed by a key of ${member[0]} (membership proven)`] };
    };
    const dl = h('button', { disabled: true, 'data-testid': 'download-cert', onclick: () => {
      const blob = new Blob([JSON.stringify(cert, null, 2)], { type: 'application/json' });
      const a = h('a', { href: URL.createObjectURL(blob), download: `evidence-${dhex.slice(0, 16)}.json` });
      document.body.append(a); a.click(); a.remove();
    } }, 'Download certificate');
    result.replaceChildren(head, h('p', { 'data-testid': 'evidence-status' }, 'Registered.'),
      kv([['title', rec.title], ['type', rec.type], ['uri', rec.uri], ['organisation', rec.owner_org],
        ['owner', accountLink(rec.owner)], ['block', blockLink(rec.height)], ['time', time(rec.time_ms)], ['transaction', txLink(txHash)]]),
      verifyControl('registration', check), dl,
      h('p', { class: 'muted' }, 'The certificate is checked offline with `qilian evidence check CERT FILE`.'));
  };
  input.addEventListener('change', () => input.files[0] && handle(input.files[0]).catch((e) => result.replaceChildren(h('p', { class: 'err' }, e.message))));
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); const f = e.dataTransfer.files[0]; if (f) handle(f).catch((x) => result.replaceChildren(h('p', { class: 'err' }, x.message))); });
  return h('div', {}, h('h1', {}, 'Evidence (存证)'), drop, result);
}

async function pageSearch(q) {
  const [doc, apps] = await Promise.all([api(`/search?q=${encodeURIComponent(q)}`).catch((e) => {
    if (e.status === 400 || e.status === 422) return { results: [] }; // too long for the index: apps may still know it
    throw e;
  }), appHits(q)]);
  const target = (r) => ({ block: `#/block/${r.id}`, tx: `#/tx/${r.id}`, account: `#/account/${r.id}`, contract: `#/contract/${r.id}` })[r.kind];
  const results = [...apps, ...doc.results.map((r) => ({ kind: r.kind, href: target(r), label: r.label }))];
  if (results.length === 1) { location.hash = results[0].href; return null; }
  return h('div', {}, h('h1', {}, `Search: ${q}`),
    results.length ? table(['kind', 'what'], results.map((r) => [r.kind, h('a', { href: r.href, 'data-testid': 'search-hit' }, r.label)]))
      : h('p', { 'data-testid': 'search-none' }, 'Nothing found.'));
}

// --- scenario apps (docs/apps/) ------------------------------------------------------------------------------
// Each page shows what the node's app routes say, and its Verify re-derives the app's state keys from the
// identifier in the URL, fetches the raw proofs (/state/…?encoding=hex, /txs/…) and checks them here; the verdict
// lists the *proven* facts, so a node that lies in its readable fields is caught by comparing them.

const utf8 = new TextEncoder();
const DOMAIN_CHAIN = utf8.encode('QILIAN/APP-CHAIN/1\0'); // apps/base.py: one step of a record's hash chain
const DOMAIN_RECALL = utf8.encode('QILIAN/TRACE-RECALL/1\0'); // trace/module.py: a recall's history entry

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
const be = (n, size) => { const b = new Uint8Array(size); let x = BigInt(n); for (let i = size - 1; i >= 0; i--) { b[i] = Number(x & 0xffn); x >>= 8n; } return b; };
const hexOf = (b) => V.bytesToHex(b);
const get = (m, k) => (m instanceof Map ? m.get(k) : undefined);

/** Fetch and verify the state entry (namespace, key bytes); returns the decoded proven value (null: proven absent). */
async function provenState(ctx, ns, key, steps) {
  const doc = await api(`/state/${encodeURIComponent(ns)}/${hexOf(key)}?encoding=hex`);
  if (doc.namespace !== ns || doc.key !== hexOf(key)) throw new V.ProofInvalid(`the node answered with a proof of another entry than ${ns}/${hexOf(key)}`);
  const vs = V.verifyState(ctx, doc);
  steps.push(...vs.steps);
  return vs.value === null ? null : V.decode(vs.value);
}

/** The organisation of a signing key, from its proven sys:member entry (never from a JSON field). */
async function provenOrg(ctx, publicKey, cache, steps) {
  const k = hexOf(publicKey);
  if (!cache.has(k)) {
    const sub = [];
    const m = await provenState(ctx, 'sys:member', publicKey, sub);
    if (!Array.isArray(m) || m.length !== 3) throw new V.ProofInvalid(`key ${short(k)} is not a member of the chain`);
    cache.set(k, m[0]);
    steps.push(`key ${short(k, 8)} is a member of ${m[0]} (membership proven)`);
  }
  return cache.get(k);
}

/** Fetch and verify a committed transaction; returns its decoded body and (when proven) receipt. */
async function provenTx(ctx, txHash, needReceipt, steps) {
  const doc = await api(`/txs/${txHash}`);
  const vt = V.verifyTx(ctx, doc, txHash);
  if (vt.txHash !== txHash) throw new V.ProofInvalid(`asked for transaction ${short(txHash)}, got ${short(vt.txHash)}`);
  if (needReceipt && !vt.receiptProven) throw new V.ProofInvalid(`the receipt of ${short(txHash)} is not provable yet; try again after the next block`);
  steps.push(`transaction ${short(txHash, 8)} proven in block ${vt.height}${vt.receiptProven ? ' with its receipt' : ''}`);
  const body = V.decode(V.hexToBytes(doc.tx.encoded))[0];
  const receipt = vt.receiptProven ? V.decode(V.hexToBytes(doc.receipt.encoded)) : null;
  return { body, receipt, height: vt.height, sender: body[1], to: body[4], method: body[5], args: body[6] };
}

function appForm(label, placeholder, go) {
  const input = h('input', { type: 'text', placeholder, 'aria-label': label });
  return h('form', { class: 'appform', onsubmit: (e) => { e.preventDefault(); const v = input.value.trim(); if (v) location.hash = go(v); } },
    h('b', {}, label, ' '), input, ' ', h('button', { type: 'submit' }, 'Open'));
}

const traceLink = (id) => link(`#/trace/${encodeURIComponent(id)}`, id);
const didLink = (d) => link(`#/did/${d}`, short(d, 20));
const assetLink = (s) => link(`#/asset/${encodeURIComponent(s)}`, s);
const recordLink = (n, i) => link(`#/registry/${encodeURIComponent(n)}/${encodeURIComponent(i)}`, `${n}/${i}`);

/** Dashboard section: open any app object, and the first few the index has seen. */
async function appsSection() {
  const ev = (source, name) => api(`/events?source=${source}&name=${name}&limit=8`).then((d) => d.items).catch(() => []);
  const [assets, dids, records, items] = await Promise.all([ev('asset', 'Created'), ev('did', 'Created'), ev('registry', 'RecordChanged'), ev('trace', 'commission')]);
  const uniq = (xs) => [...new Set(xs)];
  const chips = (xs) => (xs.length ? h('span', {}, xs.map((x) => h('span', { class: 'chip' }, x))) : h('span', { class: 'muted' }, 'none yet'));
  return h('div', { 'data-testid': 'apps' }, h('h2', {}, 'Scenario apps'),
    h('div', { class: 'apps' },
      appForm('Trace item', 'urn:epc:id:sgtin:…', (v) => `#/trace/${encodeURIComponent(v)}`),
      appForm('DID', 'did:qilian:…', (v) => `#/did/${v}`),
      appForm('Asset', 'CNY', (v) => `#/asset/${encodeURIComponent(v)}`),
      appForm('Registry record', 'registry/record', (v) => `#/registry/${v.split('/').map(encodeURIComponent).join('/')}`)),
    kv([['items', chips(uniq(items.flatMap((e) => e.data.ids || [])).slice(0, 8).map(traceLink))],
      ['DIDs', chips(uniq(dids.map((e) => e.data.did)).map(didLink))],
      ['assets', chips(uniq(assets.map((e) => e.data.symbol)).map(assetLink))],
      ['registry records', chips(uniq(records.map((e) => `${e.data.registry}/${e.data.record}`)).map((r) => recordLink(...r.split('/'))))]]));
}

async function pageTrace(id) {
  const q = encodeURIComponent(id);
  const hist = await api(`/trace/history?id=${q}`);
  const loc = hist.location;
  const byItem = new Map();
  for (const e of hist.events) { if (!byItem.has(e.item)) byItem.set(e.item, []); byItem.get(e.item).push(e); }
  const check = async (ctx) => {
    const steps = [];
    const orgs = new Map();
    let root = null;
    for (const [item, events] of byItem) {
      const rec = await provenState(ctx, 'app:trace', concat(utf8.encode('i'), utf8.encode(item)), steps);
      if (!(rec instanceof Map)) throw new V.ProofInvalid(`item ${item} is proven absent`);
      const n = get(rec, 'n');
      const own = events.filter((e) => e.item === item).sort((a, b) => a.index - b.index);
      if (own.length !== n) throw new V.ProofInvalid(`${item}: the proven record has ${n} history entries, the node listed ${own.length} (the newest may be in a block not yet proven: try again after the next block)`);
      let head = new Uint8Array(32);
      for (const e of own) {
        const t = await provenTx(ctx, e.tx_hash, true, steps);
        if (t.to !== 'trace') throw new V.ProofInvalid(`transaction ${short(e.tx_hash)} is not a trace transaction`);
        if (t.receipt[1] !== 0) throw new V.ProofInvalid(`transaction ${short(e.tx_hash)} did not succeed`);
        // The entry a transaction added: a recall's is recomputed from its signed arguments; an event's is the
        // event hash the validators committed in its receipt.
        const entry = t.method === 'recall' ? ctx.suite.hash(concat(DOMAIN_RECALL, V.encode([t.args[0], t.args[1]])))
          : get(t.receipt[4], 'event_hash');
        if (!(entry instanceof Uint8Array)) throw new V.ProofInvalid(`transaction ${short(e.tx_hash)} carries no event hash`);
        head = ctx.suite.hash(concat(DOMAIN_CHAIN, head, entry, V.hexToBytes(e.tx_hash)));
        const org = await provenOrg(ctx, t.sender, orgs, steps);
        steps.push(`${item} #${e.index}: ${t.method} by ${org} at height ${t.height}`);
      }
      if (hexOf(head) !== hexOf(get(rec, 'head'))) throw new V.ProofInvalid(`${item}: the history does not match the proven record (an entry is missing, extra, altered or out of order)`);
      steps.push(`${item}: history of ${n} entries complete and in order (hash chain matches the proven record)`);
      if (item === id) root = rec;
    }
    if (!root) throw new V.ProofInvalid('the item itself has no history');
    steps.push(`proven: custodian ${get(root, 'custodian')}, ${get(root, 'status')}${get(root, 'recalled') ? `, RECALLED (recall ${get(root, 'recalled')})` : ''}`);
    return { steps };
  };
  return h('div', {}, h('h1', {}, 'Item ', h('span', { class: 'mono' }, id)),
    verifyControl('item history', check),
    kv([['custodian', h('b', {}, loc.custodian)], ['status', loc.status + (loc.to ? ` → ${loc.to}` : '')],
      ['container', loc.container ? traceLink(loc.container) : '–'],
      ['recalled', loc.recalled ? h('span', { class: 'err', 'data-testid': 'recalled' }, `RECALLED (recall ${loc.recalled})`) : 'no'],
      ['certificate', h('a', { href: `/trace/certificate?id=${q}` }, 'download (check offline with `qilian trace check`)')],
      ['QR code', h('a', { href: `/trace/qr?id=${q}` }, 'PNG')]]),
    h('h2', {}, `History (${hist.events.length} events, with the aggregates it was packed into and the inputs it was made from)`),
    table(['item', 'relation', '#', 'block', 'transaction'], hist.events.map((e) =>
      [e.item === id ? e.item : traceLink(e.item), e.relation, String(e.index), blockLink(e.height), txLink(e.tx_hash)])));
}

async function pageDid(did) {
  const res = await api(`/apps/identity/dids/${encodeURIComponent(did)}`);
  const doc = res.didDocument || {};
  const meta = res.didDocumentMetadata || {};
  const check = async (ctx) => {
    const steps = [];
    const rec = await provenState(ctx, 'app:did', concat(utf8.encode('d'), V.hexToBytes(did.slice('did:qilian:'.length))), steps);
    if (!(rec instanceof Map)) throw new V.ProofInvalid(`${did} is proven absent`);
    if (get(rec, 'did') !== did) throw new V.ProofInvalid(`the proven record is of ${get(rec, 'did')}`);
    const frags = get(rec, 'keys').map((k) => `${did}#${k[0]}`).sort();
    const shown = (doc.verificationMethod || []).map((m) => m.id).sort();
    if (frags.join() !== shown.join()) throw new V.ProofInvalid(`the node shows keys ${shown.join(', ')} but the proven record has ${frags.join(', ')}`);
    if (Boolean(get(rec, 'deactivated')) !== Boolean(meta.deactivated)) throw new V.ProofInvalid('the node misstates whether the DID is deactivated');
    for (const k of get(rec, 'keys')) steps.push(`key ${k[0]} (${k[1]}) ${short(hexOf(k[2]), 10)} proven`);
    steps.push(`proven: version ${get(rec, 'seq')}, created at ${get(rec, 'created')}, updated at ${get(rec, 'updated')}${get(rec, 'deactivated') ? ', DEACTIVATED' : ''}`);
    return { steps };
  };
  return h('div', {}, h('h1', {}, 'DID ', h('span', { class: 'mono' }, did)),
    verifyControl('DID document', check),
    kv([['state height', String(res.stateHeight)], ['version', meta.versionId || '–'], ['created', meta.created ? blockLink(meta.created) : '–'],
      ['updated', meta.updated ? blockLink(meta.updated) : '–'], ['deactivated', meta.deactivated ? h('b', { class: 'err' }, 'yes') : 'no'],
      ['controllers', (doc.controller ? [].concat(doc.controller) : []).map((c) => (c === did ? c : didLink(c))).flatMap((x) => [x, ' '])]]),
    h('h2', {}, 'Verification methods'),
    table(['id', 'type', 'controller'], (doc.verificationMethod || []).map((m) => [h('span', { class: 'mono' }, m.id), m.type, m.controller])),
    h('h2', {}, 'DID document'), json(doc));
}

async function pageAsset(symbol) {
  const a = await api(`/apps/assets/${encodeURIComponent(symbol)}`);
  const evs = await api(`/events?source=asset&limit=100`).then((d) => d.items.filter((e) => e.data.symbol === symbol)).catch(() => []);
  const holders = [...new Set(evs.flatMap((e) => [e.data.to, e.data.from]).filter((x) => /^[0-9a-f]{40}$/.test(x || '')))];
  const balances = await Promise.all(holders.map((acct) => api(`/apps/assets/${encodeURIComponent(symbol)}/balances/${acct}`).then((b) => b.balance).catch(() => null)));
  const balKey = (acct) => concat(utf8.encode('b'), utf8.encode(symbol), new Uint8Array([0]), V.hexToBytes(acct));
  const check = async (ctx) => {
    const steps = [];
    const rec = await provenState(ctx, 'app:asset', concat(utf8.encode('a'), utf8.encode(symbol)), steps);
    if (!(rec instanceof Map) || get(rec, 'symbol') !== symbol) throw new V.ProofInvalid(`asset ${symbol} is proven absent`);
    steps.push(`proven: ${symbol} issued by ${get(rec, 'issuer_org')}, supply ${get(rec, 'supply')}`);
    for (let i = 0; i < holders.length; i++) {
      const sub = [];
      const v = await provenState(ctx, 'app:asset', balKey(holders[i]), sub);
      const bal = v === null ? 0 : Number(v);
      if (balances[i] !== null && bal !== balances[i]) throw new V.ProofInvalid(`the node shows ${balances[i]} for ${holders[i]}, the proof says ${bal}`);
      steps.push(`balance of ${short(holders[i], 8)}: ${bal} (proven)`);
    }
    return { steps };
  };
  return h('div', {}, h('h1', {}, 'Asset ', h('span', { class: 'mono' }, symbol)),
    verifyControl('asset', check),
    kv([['name', a.name], ['issuer', a.issuer_org], ['decimals', String(a.decimals)], ['supply', h('b', { 'data-testid': 'supply' }, String(a.supply))],
      ['max supply', String(a.max_supply)], ['created', blockLink(a.created)]]),
    h('h2', {}, 'Holders (accounts seen in its events, from the index)'),
    table(['account', 'balance'], holders.map((acct, i) => [accountLink(acct), balances[i] === null ? '?' : String(balances[i])])),
    h('h2', {}, 'Events'),
    table(['block', 'name', 'data', 'transaction'], evs.slice(-PAGE).reverse().map((e) =>
      [blockLink(e.height), e.name, h('span', { class: 'mono' }, JSON.stringify(e.data)), txLink(e.tx_hash)])));
}

async function pageRegistry(name, id) {
  const base = `/apps/registry/${encodeURIComponent(name)}`;
  const [reg, cur, hist] = await Promise.all([api(base), api(`${base}/records/${encodeURIComponent(id)}`), api(`${base}/records/${encodeURIComponent(id)}/history`)]);
  const rec = cur.record;
  const nameId = concat(utf8.encode(name), new Uint8Array([0]), utf8.encode(id));
  const check = async (ctx) => {
    const steps = [];
    const orgs = new Map();
    const now = await provenState(ctx, 'app:registry', concat(utf8.encode('c'), nameId), steps);
    if (!(now instanceof Map)) throw new V.ProofInvalid(`record ${name}/${id} is proven absent`);
    const version = get(now, 'version');
    steps.push(`proven: version ${version}, holder ${get(now, 'holder')}`);
    for (let v = 1; v <= version; v++) {
      const entry = await provenState(ctx, 'app:registry', concat(utf8.encode('h'), nameId, be(v, 4)), steps);
      if (!(entry instanceof Map)) throw new V.ProofInvalid(`version ${v} is proven absent`);
      const app = get(entry, 'application');
      for (const vote of get(app, 'votes')) {
        const t = await provenTx(ctx, hexOf(get(vote, 'tx_hash')), false, steps);
        const org = await provenOrg(ctx, t.sender, orgs, steps);
        const method = get(vote, 'approve') ? 'approve' : 'reject';
        if (t.to !== 'registry' || t.method !== method || t.args[0] !== get(app, 'id') || org !== get(vote, 'org')) throw new V.ProofInvalid(`the ${method} recorded for ${get(vote, 'org')} is not its signed transaction`);
        steps.push(`version ${v}: ${method} by ${org} (signed, in block ${t.height})`);
      }
    }
    return { steps };
  };
  return h('div', {}, h('h1', {}, 'Registry record ', h('span', { class: 'mono' }, `${name}/${id}`)),
    verifyControl('record and approvals', check),
    kv([['registry', `${name} (changes need ${reg.text || JSON.stringify(reg.rule)})`], ['version', String(rec.version)], ['holder', h('b', {}, rec.holder)],
      ['attributes', json(rec.attributes)], ['documents', (rec.documents || []).map((d) => h('div', { class: 'mono' }, asHex(d)))],
      ['updated', blockLink(rec.updated)], ['application', String(rec.application)]]),
    h('h2', {}, 'History and approvals'),
    table(['version', 'holder', 'application', 'decisions', 'block'], hist.map((e) => [String(e.record.version), e.record.holder, String(e.application.id),
      h('span', {}, e.application.votes.map((v) => h('div', {}, `${v.approve ? '✔ approved' : '✘ rejected'} by ${v.org}${v.note ? ` (${v.note})` : ''} `, txLink(asHex(v.tx_hash))))),
      blockLink(e.record.updated)])));
}

/** Identifiers the scenario apps know, recognised by their shape and looked up on the node. */
async function appHits(q) {
  const hits = [];
  const probe = (path, hit) => api(path).then(() => hits.push(hit)).catch(() => {});
  const jobs = [];
  if (/^did:qilian:[0-9a-f]{40}$/.test(q)) jobs.push(probe(`/apps/identity/dids/${q}`, { kind: 'did', href: `#/did/${q}`, label: `DID ${q}` }));
  else if (/^[a-z][a-z0-9+.-]*:\S+$/.test(q)) jobs.push(probe(`/trace/item?id=${encodeURIComponent(q)}`, { kind: 'trace item', href: `#/trace/${encodeURIComponent(q)}`, label: `item ${q}` }));
  if (/^[A-Z][A-Z0-9]{0,11}$/.test(q)) jobs.push(probe(`/apps/assets/${q}`, { kind: 'asset', href: `#/asset/${q}`, label: `asset ${q}` }));
  const m = q.match(/^([\w.-]{1,32})\/([\w.-]{1,32})$/);
  if (m) jobs.push(probe(`/apps/registry/${m[1]}/records/${m[2]}`, { kind: 'registry record', href: `#/registry/${m[1]}/${m[2]}`, label: `record ${q}` }));
  await Promise.all(jobs);
  return hits;
}

// --- routing and live updates -------------------------------------------------------------------------------

const routes = [
  [/^#?\/?$/, () => pageDashboard()],
  [/^#\/blocks(?:\/(\d+))?$/, (m) => pageBlocks(m[1])],
  [/^#\/block\/(\w+)$/, (m) => pageBlock(m[1])],
  [/^#\/tx\/([0-9a-fA-F]+)$/, (m) => pageTx(m[1])],
  [/^#\/account\/([^/]+)(?:\/([\d.]+))?$/, (m) => pageAccount(m[1], m[2])],
  [/^#\/contracts(?:\/([\d.]+))?$/, (m) => pageContracts(m[1])],
  [/^#\/contract\/([^/]+)$/, (m) => pageContract(decodeURIComponent(m[1]))],
  [/^#\/state(?:\/([^/]*)\/(.*))?$/, (m) => pageState(m[1] && decodeURIComponent(m[1]), m[2] && decodeURIComponent(m[2]))],
  [/^#\/evidence$/, () => pageEvidence()],
  [/^#\/search\/(.+)$/, (m) => pageSearch(decodeURIComponent(m[1]))],
  [/^#\/trace\/(.+)$/, (m) => pageTrace(decodeURIComponent(m[1]))],
  [/^#\/did\/(did:qilian:[0-9a-f]{40})$/, (m) => pageDid(m[1])],
  [/^#\/asset\/([^/]+)$/, (m) => pageAsset(decodeURIComponent(m[1]))],
  [/^#\/registry\/([^/]+)\/([^/]+)$/, (m) => pageRegistry(decodeURIComponent(m[1]), decodeURIComponent(m[2]))],
];

/** Shows the page for the URL's fragment. ``main[data-view]`` names the fragment whose page is on screen and
 * ``aria-busy`` is set while a newer one loads, so neither a reader nor a test acts on the previous page's
 * content (its Verify button, its verdict) after the URL has moved on. */
async function render() {
  const seq = ++renderSeq;
  const hash = location.hash || '#/';
  $main.setAttribute('aria-busy', 'true');
  const show = (...nodes) => {
    if (seq !== renderSeq) return;
    $main.replaceChildren(...nodes);
    $main.dataset.view = hash;
    $main.removeAttribute('aria-busy');
  };
  for (const [re, page] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    try {
      const view = await page(m);
      if (view) show(view);
    } catch (e) {
      show(h('h1', {}, 'Not available'), h('p', { class: 'err', 'data-testid': 'page-error' }, e.message));
    }
    return;
  }
  show(h('h1', {}, 'Not found'), h('p', {}, 'No such page.'));
}

function connectLive() {
  const el = document.getElementById('live-height');
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  let ws;
  try { ws = new WebSocket(`${proto}://${location.host}/events`); } catch { return; }
  ws.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    if (m.type === 'block') {
      el.textContent = String(m.height);
      el.parentElement.classList.remove('off');
      const dh = document.getElementById('dash-height');
      if (dh) dh.textContent = String(m.height);
    }
    if (m.type === 'block' || m.type === 'event') {
      feed.unshift(m);
      feed.length = Math.min(feed.length, MAX_FEED);
      const f = document.getElementById('feed');
      if (f) f.replaceChildren(...feedLines());
    }
  };
  ws.onclose = () => { el.parentElement.classList.add('off'); setTimeout(connectLive, 3000); };
  ws.onerror = () => ws.close();
}

document.getElementById('search').addEventListener('submit', (e) => {
  e.preventDefault();
  const q = document.getElementById('search-input').value.trim();
  if (q) location.hash = `#/search/${encodeURIComponent(q)}`;
});
window.addEventListener('hashchange', render);
api('/status').then((s) => {
  status = s;
  document.getElementById('chain-id').textContent = `${s.chain_id} · ${s.suite}`;
  document.getElementById('live-height').textContent = String(s.height);
}).catch(() => {});
getContext().catch(() => {});
connectLive();
render();
