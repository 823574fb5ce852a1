// Shared by the wallboard and the report page: the login kept for this
// browser tab (the credentials: /wsi takes them, and a restarted facd needs
// a new login), PortSIP's login and bearer tokens for /api/, state names
// and durations.

export const STATES = ['READY', 'NOT_READY', 'QUEUE_CALL', 'OTHER_CALL', 'WRAP_UP', 'LOGGED_OUT'];

const KEY = 'facd-login';

export function loadLogin() {
  try {
    const v = JSON.parse(sessionStorage.getItem(KEY) || 'null');
    return v && v.username && v.password ? v : null;
  } catch (_) {
    return null;
  }
}

export function saveLogin(login) {
  sessionStorage.setItem(KEY, JSON.stringify(login));
}

export function clearLogin() {
  sessionStorage.removeItem(KEY);
}

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// PortSIP's error body: {"errors":[{"code","message"}]}.
async function errorOf(r) {
  let msg = `${r.status} ${r.statusText}`;
  try {
    const body = await r.json();
    const e = body && body.errors && body.errors[0];
    if (e && e.message) msg = e.message;
  } catch (_) { /* not JSON */ }
  return new HttpError(r.status, msg);
}

// The session of this page: an access token from POST /api/login (PortSIP's
// login; it expires, and facd forgets it when it restarts).
let session = null; // {username, token, until (ms), role}

async function signIn(login) {
  const r = await fetch('/api/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ username: login.username, password: login.password }),
  });
  if (!r.ok) throw await errorOf(r);
  const t = await r.json();
  session = {
    username: login.username,
    token: t.access_token,
    until: Date.now() + (Number(t.expires_in) || 60) * 1000,
    role: t.role,
  };
  return session;
}

// The access token for `login`: a new login when there is none, it is
// another user's, or it expires within a minute.
async function token(login) {
  if (!session || session.username !== login.username || Date.now() > session.until - 60000) {
    await signIn(login);
  }
  return session.token;
}

// Drops the access token (facd restarted: it no longer knows it).
export function forgetSession() {
  session = null;
}

// `Admin` or `StandardUser` (an extension), once logged in.
export function role() {
  return session ? session.role : '';
}

// A GET under /api/ with the bearer token; a 401 (token expired or facd
// restarted) logs in again once and retries.
export async function apiFetch(path, login, accept = 'application/json') {
  const get = async () => fetch(path, {
    headers: { Authorization: `Bearer ${await token(login)}`, Accept: accept },
  });
  let r = await get();
  if (r.status === 401) {
    forgetSession();
    r = await get();
  }
  if (!r.ok) throw await errorOf(r);
  return r;
}

export async function getJson(path, login) {
  return (await apiFetch(path, login)).json();
}

// 0:05, 12:34, 1:02:03; "" when unknown.
export function duration(ms) {
  if (!(ms >= 0)) return '';
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

export function stateBadge(state) {
  return el('span', { class: `state s-${state}`, 'data-state': state, text: state });
}

// Shows the login form until credentials are entered; `onLogin(login)`
// returns a promise that rejects with an HttpError when they are refused.
export function setupLogin(onLogin, onLogout) {
  const form = document.getElementById('login');
  const error = document.getElementById('login-error');
  const logout = document.getElementById('logout');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const login = {
      username: document.getElementById('login-user').value.trim(),
      password: document.getElementById('login-password').value,
    };
    error.textContent = '';
    forgetSession();
    try {
      await onLogin(login);
      saveLogin(login);
      form.hidden = true;
      logout.hidden = false;
    } catch (e) {
      error.textContent = e.status === 401 ? 'Wrong user or password.' : String(e.message || e);
    }
  });
  logout.addEventListener('click', () => {
    clearLogin();
    forgetSession();
    onLogout();
    logout.hidden = true;
    form.hidden = false;
  });
  const saved = loadLogin();
  const ask = () => { form.hidden = false; };
  if (saved) {
    onLogin(saved).then(() => { logout.hidden = false; }, () => { clearLogin(); ask(); });
  } else {
    ask();
  }
}
