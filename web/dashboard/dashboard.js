// Shared by every dashboard page: the session's CSRF token for scripts that change state.

/** The CSRF token of this page's session (sent as X-CSRF-Token). */
export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : '';
}

/** POST JSON to a dashboard endpoint with the session's CSRF token; resolves to the parsed answer. */
export async function postJSON(url, body) {
  const response = await fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken() },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || data.title || `HTTP ${response.status}`);
  return data;
}
