// REST calls (only the login: everything else goes over the WebSocket)
// and the session kept in localStorage.

const SESSION_KEY = 'chorus.session';

const MESSAGES = {
  tenant_not_found: 'There is no workspace with that name.',
  bad_credentials: 'Wrong handle or password.',
  invalid_args: 'Please fill in every field.',
  rate_limited: 'Too many attempts; wait a moment.',
};

export async function login(tenant, handle, password) {
  let res;
  try {
    res = await fetch('/api/v1/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tenant, handle, password }),
    });
  } catch {
    throw new Error('Cannot reach the server. Check your connection.');
  }
  let data = {};
  try {
    data = await res.json();
  } catch { /* not JSON */ }
  if (!res.ok || data.ok === false || !data.token) {
    throw new Error(MESSAGES[data.error] || data.message || `Sign-in failed (${res.status}).`);
  }
  return { token: data.token, user: data.user, tenant: data.tenant };
}

export function loadSession() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
    return s && s.token && s.user ? s : null;
  } catch {
    return null;
  }
}

export function saveSession(session) {
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function clearSession() {
  localStorage.removeItem(SESSION_KEY);
}
