// The report page: time in each state per agent x queue over a UTC range,
// from GET /api/reports/agent_states, as a table and as a CSV download.

import { STATES, getJson, apiFetch, setupLogin, el, duration } from './common.js';

let login = null;
const $ = (id) => document.getElementById(id);

function pad(n) { return String(n).padStart(2, '0'); }

// `YYYY-MM-DDTHH:MM:SS` in UTC, as datetime-local inputs hold it.
function utcInput(d) {
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` +
    `T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

function query(format) {
  const p = new URLSearchParams();
  p.set('from', $('from').value);
  p.set('to', $('to').value);
  if ($('queue').value) p.set('queue_id', $('queue').value);
  if ($('agent').value.trim()) p.set('extension_number', $('agent').value.trim());
  if (format) p.set('format', format);
  return `/api/reports/agent_states?${p}`;
}

async function show() {
  $('report-error').textContent = '';
  let r;
  try {
    r = await getJson(query(), login);
  } catch (e) {
    $('report-error').textContent = e.message;
    return;
  }
  const reasons = [];
  for (const it of r.items) {
    for (const k of Object.keys(it.not_ready_ms)) if (!reasons.includes(k)) reasons.push(k);
  }
  reasons.sort();
  const head = el('tr', {},
    el('th', { text: 'Agent' }), el('th', { text: 'Queue' }),
    el('th', { text: 'Logins' }), el('th', { text: 'ACD calls' }), el('th', { text: 'Wrap-ups' }));
  for (const s of STATES) head.append(el('th', { class: `state-col s-${s}-col`, text: s }));
  for (const k of reasons) head.append(el('th', { text: `NOT_READY ${k || '(no reason)'}` }));
  head.append(el('th', { text: 'Total' }));
  $('table').tHead.replaceChildren(head);
  const body = $('table').tBodies[0];
  body.replaceChildren();
  for (const it of r.items) {
    const tr = el('tr', { 'data-agent': it.extension_number, 'data-queue': it.queue_number, 'data-queue-id': it.queue_id },
      el('td', { text: `${it.display_name} (${it.extension_number})` }),
      el('td', { text: `${it.queue_number} ${it.queue_name}` }),
      el('td', { class: 'num', text: String(it.logins) }),
      el('td', { class: 'num', text: String(it.acd_calls) }),
      el('td', { class: 'num', text: String(it.wrap_ups) }));
    let total = 0;
    for (const s of STATES) {
      total += it.state_ms[s];
      tr.append(el('td', { class: 'num', 'data-state': s, text: duration(it.state_ms[s]) }));
    }
    for (const k of reasons) tr.append(el('td', { class: 'num', text: duration(it.not_ready_ms[k] || 0) }));
    tr.append(el('td', { class: 'num total', text: duration(total) }));
    body.append(tr);
  }
  $('summary').textContent = `${r.from} to ${r.to}: ${duration(r.range_ms)} — ` +
    `${r.count} agent × queue rows; each row's states add up to the range.`;
}

async function download() {
  $('report-error').textContent = '';
  try {
    const r = await apiFetch(query('csv'), login, 'text/csv');
    const blob = await r.blob();
    const cd = r.headers.get('Content-Disposition') || '';
    const m = /filename="([^"]+)"/.exec(cd);
    const a = el('a', { href: URL.createObjectURL(blob), download: m ? m[1] : 'agent-states.csv' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    $('report-error').textContent = e.message;
  }
}

async function start(l) {
  const s = await getJson('/api/wallboard/state', l);
  login = l;
  const sel = $('queue');
  sel.replaceChildren(el('option', { value: '', text: 'All queues' }));
  for (const q of s.queues) {
    sel.append(el('option', { value: q.id, text: `${q.extension_number} ${q.name}` }));
  }
  const nowD = new Date(s.now_ms);
  if (!$('to').value) $('to').value = utcInput(nowD);
  if (!$('from').value) {
    const midnight = new Date(Date.UTC(nowD.getUTCFullYear(), nowD.getUTCMonth(), nowD.getUTCDate()));
    $('from').value = utcInput(midnight.getTime() === nowD.getTime() ? new Date(s.now_ms - 3600e3) : midnight);
  }
  $('report').hidden = false;
  await show();
}

function stop() {
  login = null;
  $('report').hidden = true;
}

$('range').addEventListener('submit', (ev) => {
  ev.preventDefault();
  show();
});
$('csv').addEventListener('click', download);
setupLogin(start, stop);
