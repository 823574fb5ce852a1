// Shared by the wallboard and the report page: the login kept for this
// browser tab, authenticated fetches, state names and durations.

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

// HTTP Basic with the same name and secret /wsi takes (UTF-8, RFC 7617).
export function authHeader(login) {
  const bytes = new TextEncoder().encode(`${login.username}:${login.password}`);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return 'Basic ' + btoa(bin);
}

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function apiFetch(path, login, accept = 'application/json') {
  const r = await fetch(path, { headers: { Authorization: authHeader(login), Accept: accept } });
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try {
      const body = await r.json();
      if (body && body.error) msg = body.error;
    } catch (_) { /* not JSON */ }
    throw new HttpError(r.status, msg);
  }
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
