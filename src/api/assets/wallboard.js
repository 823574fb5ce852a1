// The live wallboard: a snapshot from GET /api/wallboard/state, then /wsi
// (queue_status snapshots and queue_agent_status updates, queues by id).
// Per queue: counts per state and the longest-waiting READY agent; per
// agent x queue: state, reason, pending change and time in state, ticking.

import {
  STATES, getJson, setupLogin, el, stateBadge, duration, clearLogin, forgetSession, role,
} from './common.js';
import { follow } from './wsi.js';

const model = {
  queues: [],          // [{id, number, name}], as GET /api/call_queues lists them
  agents: new Map(),   // extension -> {name, cells: Map(queue id -> {state, reason, pending, since})}
  offset: 0,           // server clock minus ours (ms)
};
let login = null;
let feed = null;
let refreshTimer = null;

const $ = (id) => document.getElementById(id);
const now = () => Date.now() + model.offset;

function filterValue() {
  const m = /queue=([0-9]+)/.exec(location.hash);
  return m ? m[1] : '';
}

async function refresh() {
  const s = await getJson('/api/wallboard/state', login);
  model.offset = s.now_ms - Date.now();
  model.queues = s.queues.map((q) => ({ id: q.id, number: q.extension_number, name: q.name }));
  model.agents = new Map();
  for (const a of s.agents) {
    const cells = new Map();
    for (const c of a.queues) {
      cells.set(c.queue_id, { state: c.status, reason: c.reason || '', pending: c.pending || '', since: c.since_ms });
    }
    model.agents.set(a.extension_number, { name: a.display_name, cells });
  }
  render();
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), 250);
}

// Whether an agent (or a queue's member not on the board yet) concerns
// this board: an extension's login shows only itself.
function shown(ext) {
  return model.agents.has(ext) || role() === 'Admin';
}

function setCell(cell, state, sinceMs, reason) {
  if (cell.state === state && cell.reason === reason) return false;
  if (cell.state !== state) cell.since = sinceMs;
  cell.state = state;
  cell.reason = state === 'NOT_READY' ? reason : '';
  return true;
}

// queue_status: every member of one queue, after each (re)subscribe.
function onQueue(queueId, agents) {
  let changed = false;
  let unknown = false;
  const present = new Set();
  for (const a of agents) {
    present.add(a.ext);
    const cell = model.agents.has(a.ext) && model.agents.get(a.ext).cells.get(queueId);
    if (cell) changed = setCell(cell, a.state, a.since, a.reason) || changed;
    else if (shown(a.ext)) unknown = true;
  }
  for (const [ext, a] of model.agents) {
    if (!present.has(ext) && a.cells.delete(queueId)) changed = true;
  }
  if (changed) render();
  // Pending states, and members the board has not seen, come with the
  // REST snapshot.
  if (changed || unknown) scheduleRefresh();
}

// queue_agent_status: one agent's new state in a queue.
function onState(queueId, ext, state, sinceMs, reason) {
  if (!shown(ext)) return;
  const a = model.agents.get(ext);
  const cell = a && a.cells.get(queueId);
  if (cell && setCell(cell, state, sinceMs, reason)) render();
  // The pending state and the exact time come with the REST snapshot.
  scheduleRefresh();
}

// queue_agent_status removed_agents: the agent left the queue.
function onRemoved(queueId, ext) {
  const a = model.agents.get(ext);
  if (a && a.cells.delete(queueId)) render();
}

function onStatus(kind, delay) {
  const c = $('conn');
  if (kind === 'live') {
    c.className = 'conn live';
    c.textContent = 'Live';
    scheduleRefresh();
  } else if (kind === 'reconnecting') {
    // facd may have restarted: its login tokens are gone.
    forgetSession();
    c.className = 'conn down';
    c.textContent = delay > 0 ? `Reconnecting in ${Math.ceil(delay / 1000)} s…` : 'Reconnecting…';
  } else {
    c.className = 'conn down';
    c.textContent = 'Connecting…';
  }
}

function rows() {
  const q = filterValue();
  const out = [];
  for (const queue of model.queues) {
    if (q && queue.number !== q) continue;
    for (const [ext, a] of model.agents) {
      const cell = a.cells.get(queue.id);
      if (cell) out.push({ ext, name: a.name, queue, cell });
    }
  }
  return out;
}

function sinceText(cell) {
  return cell.since > 0 ? duration(now() - cell.since) : '';
}

function render() {
  const sel = $('queue-filter');
  const q = filterValue();
  const known = new Set(Array.from(sel.options).map((o) => o.value));
  for (const queue of model.queues) {
    if (!known.has(queue.number)) {
      sel.append(el('option', { value: queue.number, text: `${queue.number} ${queue.name}` }));
    }
  }
  sel.value = q;
  sel.parentElement.hidden = false;

  const cards = $('queues');
  cards.replaceChildren();
  for (const queue of model.queues) {
    if (q && queue.number !== q) continue;
    const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
    let longest = null;
    for (const [ext, a] of model.agents) {
      const cell = a.cells.get(queue.id);
      if (!cell) continue;
      counts[cell.state] += 1;
      if (cell.state === 'READY' && (!longest || cell.since < longest.since)) {
        longest = { ext, name: a.name, since: cell.since };
      }
    }
    const tiles = el('div', { class: 'counts' });
    for (const s of STATES) {
      tiles.append(el('div', { class: `count s-${s}`, 'data-state': s, 'data-count': counts[s] },
        el('span', { class: 'label', text: s }), el('b', { text: String(counts[s]) })));
    }
    const long = el('p', { class: 'longest' }, 'Longest ready: ');
    if (longest) {
      long.append(el('strong', { text: `${longest.name} (${longest.ext})` }), ' ',
        el('span', { class: 'time', 'data-since': longest.since, text: sinceText(longest) }));
    } else {
      long.append(el('strong', { text: 'nobody ready' }));
    }
    cards.append(el('article', { class: 'queue', 'data-queue': queue.number },
      el('h2', { text: `${queue.name} · ${queue.number}` }), tiles, long));
  }

  const body = $('agents').tBodies[0];
  body.replaceChildren();
  for (const r of rows()) {
    body.append(el('tr', { 'data-agent': r.ext, 'data-queue': r.queue.number, 'data-queue-id': r.queue.id },
      el('td', { class: 'name' }, r.name, el('small', { text: r.ext })),
      el('td', { text: `${r.queue.number} ${r.queue.name}` }),
      el('td', { class: 'st' }, stateBadge(r.cell.state)),
      el('td', { class: 'reason', text: r.cell.reason }),
      el('td', { class: 'pending' }, r.cell.pending ? stateBadge(r.cell.pending) : ''),
      el('td', { class: 'time', 'data-since': r.cell.since, text: sinceText(r.cell) })));
  }
}

function tick() {
  for (const t of document.querySelectorAll('[data-since]')) {
    const since = Number(t.getAttribute('data-since'));
    t.textContent = since > 0 ? duration(now() - since) : '';
  }
  $('clock').textContent = new Date(now()).toLocaleTimeString();
}

async function start(l) {
  login = l;
  await refresh();
  $('board').hidden = false;
  if (feed) feed.close();
  feed = follow({
    username: l.username,
    password: l.password,
    onQueue,
    onState,
    onRemoved,
    onStatus,
    onAuthFailed: (msg) => {
      clearLogin();
      $('conn').className = 'conn down';
      $('conn').textContent = `Live feed refused: ${msg}`;
    },
  });
}

function stop() {
  if (feed) feed.close();
  feed = null;
  login = null;
  $('board').hidden = true;
  $('conn').textContent = '';
  $('conn').className = 'conn';
}

$('queue-filter').addEventListener('change', (ev) => {
  location.hash = ev.target.value ? `queue=${ev.target.value}` : '';
  render();
});
window.addEventListener('hashchange', render);
setInterval(tick, 250);
tick();
setupLogin(start, stop);
