// callgate widget: a call button and a small call panel for any website, in one script tag.
//
//   <script src="https://HOST/widget.js" data-publishable-key="cg_pk_…" data-agent-id="agt_…" async></script>
//
// Optional attributes: data-label (the button's text, default "Talk to us"), data-mode ("audio" or
// "audio_text"), data-transport ("websocket" or "webrtc"), data-title (the panel's heading).
//
// The page's origin must be one the publishable key allows (`allowed_origins`): the call is created
// with POST /v1/web-calls/token from the page, and callgate refuses other origins. Everything is drawn
// inside one element's shadow root (no global CSS in or out), styled with a constructed stylesheet
// (no inline <style> or style="" in the page: it works under a CSP that allows only HOST), and joined
// with the browser SDK loaded from HOST (/static/callgate.js). Docs: docs/clients.md.
(() => {
  'use strict';

  const script = document.currentScript;
  if (!script || !script.src) return;
  const options = {
    key: script.dataset.publishableKey || '',
    agentId: script.dataset.agentId || '',
    label: script.dataset.label || 'Talk to us',
    title: script.dataset.title || 'Voice assistant',
    mode: script.dataset.mode === 'audio_text' ? 'audio_text' : 'audio',
    transport: script.dataset.transport === 'webrtc' ? 'webrtc' : 'websocket',
  };
  const HOST = new URL(script.src).origin;

  const CSS = `
    :host { position: fixed !important; right: 20px !important; bottom: 20px !important;
            z-index: 2147483000 !important; display: block !important; }
    .cg { all: initial; display: flex; flex-direction: column; align-items: flex-end; gap: 10px;
          font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24; }
    .cg * { box-sizing: border-box; }
    .cg button, .cg input { font-family: inherit; font-size: inherit; line-height: inherit; }
    .cg button { cursor: pointer; border: 1px solid #0b6bcb; border-radius: 999px; padding: 8px 14px;
                 background: #0b6bcb; color: #ffffff; font-weight: 600; }
    .cg button.secondary { background: #ffffff; color: #0b6bcb; }
    .cg button.danger { background: #b42318; border-color: #b42318; color: #ffffff; }
    .cg button[aria-pressed="true"] { background: #59636e; border-color: #59636e; color: #ffffff; }
    .cg button:disabled { opacity: .55; cursor: default; }
    .cg button:focus-visible, .cg input:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
    .cg .launcher { padding: 12px 18px; box-shadow: 0 4px 14px rgba(0, 0, 0, .25); }
    .panel { width: min(340px, calc(100vw - 40px)); background: #ffffff; border: 1px solid #d0d7de;
             border-radius: 12px; box-shadow: 0 8px 28px rgba(0, 0, 0, .25); padding: 12px;
             display: flex; flex-direction: column; gap: 8px; }
    .panel[hidden] { display: none; }
    h2 { margin: 0; font-size: 15px; font-weight: 700; }
    .status { margin: 0; color: #3d4752; font-size: 13px; }
    .transcript { margin: 0; padding: 4px; max-height: 240px; min-height: 60px;
                  overflow-y: auto; display: flex; flex-direction: column; gap: 6px;
                  background: #f6f8fa; border-radius: 8px; }
    .transcript .turn { margin: 0; padding: 6px 10px; border-radius: 10px; max-width: 85%; background: #ffffff;
                     border: 1px solid #d0d7de; align-self: flex-start; }
    .transcript .turn.user { align-self: flex-end; background: #dbeafe; border-color: #bcd3f5; }
    .transcript .turn.partial { color: #3d4752; font-style: italic; }
    .controls { display: flex; gap: 8px; }
    form { display: flex; gap: 6px; margin: 0; }
    input { flex: 1; min-width: 0; border: 1px solid #8c959f; border-radius: 8px; padding: 7px 9px;
            background: #ffffff; color: #1b1f24; }
    .sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
               clip: rect(0, 0, 0, 0); white-space: nowrap; border: 0; }
  `;

  const el = (tag, props = {}, children = []) => {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name === 'text') node.textContent = value;
      else if (name === 'class') node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);
    return node;
  };

  const REFUSED = 'Calls are not available on this website.';

  function mount() {
    const root = el('div', { 'data-callgate-widget': '' });
    const shadow = root.attachShadow({ mode: 'open' });
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    shadow.adoptedStyleSheets = [sheet];

    const status = el('p', { class: 'status', role: 'status', 'aria-live': 'polite', id: 'cg-status' });
    const transcript = el('div', { class: 'transcript', role: 'log', 'aria-label': 'Transcript', tabindex: '0' });
    const mute = el('button', { type: 'button', class: 'secondary', 'aria-pressed': 'false', text: 'Mute' });
    const hangup = el('button', { type: 'button', class: 'danger', text: 'Hang up' });
    const input = el('input', { id: 'cg-text', type: 'text', autocomplete: 'off', maxlength: '2000' });
    const send = el('button', { type: 'submit', text: 'Send' });
    const form = el('form', {}, [el('label', { for: 'cg-text', class: 'sr-only', text: 'Type a message' }), input, send]);
    const heading = el('h2', { id: 'cg-title', text: options.title });
    const panel = el('section', { class: 'panel', id: 'cg-panel', role: 'region', 'aria-labelledby': 'cg-title' }, [
      heading, status, transcript, el('div', { class: 'controls' }, [mute, hangup]), form,
    ]);
    panel.hidden = true;
    const launcher = el('button', {
      type: 'button', class: 'launcher', 'aria-expanded': 'false', 'aria-controls': 'cg-panel', text: options.label,
    });
    shadow.append(el('div', { class: 'cg' }, [panel, launcher]));
    document.body.append(root);

    let call = null;
    let busy = false;
    const bubbles = new Map();

    const setStatus = (text) => { status.textContent = text; };
    const setInCall = (inCall) => {
      mute.disabled = hangup.disabled = input.disabled = send.disabled = !inCall;
      launcher.disabled = inCall || busy;
    };
    const show = (open) => {
      panel.hidden = !open;
      launcher.setAttribute('aria-expanded', String(open));
    };
    const say = ({ role, text, final, turnId, typed }) => {
      const key = `${role}:${typed ? `typed-${bubbles.size}` : turnId}`;
      let bubble = bubbles.get(key);
      if (!bubble) {
        bubble = el('p', { class: role === 'user' ? 'turn user' : 'turn agent' });
        bubble.append(el('span', { class: 'sr-only', text: role === 'user' ? 'You: ' : 'Assistant: ' }), el('span'));
        bubbles.set(key, bubble);
        transcript.append(bubble);
      }
      bubble.lastChild.textContent = text;
      bubble.classList.toggle('partial', final === false);
      transcript.scrollTop = transcript.scrollHeight;
    };
    const finish = (message) => {
      call = null;
      root.call = null;
      busy = false;
      setInCall(false);
      setStatus(message);
      launcher.textContent = options.label;
      launcher.focus();
    };

    async function start() {
      if (busy || call) return;
      busy = true;
      bubbles.clear();
      transcript.replaceChildren();
      show(true);
      setInCall(false);
      setStatus('Connecting…');
      let webCall;
      try {
        const response = await fetch(`${HOST}/v1/web-calls/token`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${options.key}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ agent_id: options.agentId, transport: options.transport, mode: options.mode }),
        });
        if (!response.ok) {
          finish(response.status === 403 || response.status === 401 ? REFUSED : 'The assistant is busy; try again later.');
          return;
        }
        webCall = await response.json();
      } catch {
        finish(REFUSED); // a refused CORS preflight looks like a network error to the page
        return;
      }
      try {
        const sdk = await import(`${HOST}/static/callgate.js`);
        call = await sdk.connect({
          transport: options.transport,
          url: options.transport === 'webrtc' ? webCall.webrtc_offer_url : webCall.websocket_url,
          token: webCall.token,
          iceServers: webCall.ice_servers || [],
          mode: options.mode,
          onEvent: (name, detail) => {
            if (name === 'transcript') say(detail);
            else if (name === 'agent-speaking' && call) setStatus(detail ? 'Assistant speaking…' : 'Listening…');
            else if (name === 'ended') finish('Call ended.');
          },
        });
      } catch (error) {
        finish(`Could not connect${error && error.code ? ` (${error.code})` : ''}.`);
        return;
      }
      root.call = call;
      busy = false;
      setInCall(true);
      setStatus('Connected. Listening…');
      hangup.focus();
    }

    launcher.addEventListener('click', () => { start(); });
    hangup.addEventListener('click', () => { if (call) call.hangup(); });
    mute.addEventListener('click', () => {
      if (!call) return;
      call.mute(!call.muted);
      mute.setAttribute('aria-pressed', String(call.muted));
      mute.textContent = call.muted ? 'Unmute' : 'Mute';
    });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!call || !text) return;
      call.sendText(text);
      input.value = '';
    });
    panel.addEventListener('keydown', (event) => {
      if (event.key !== 'Escape') return;
      if (call) call.hangup();
      else { show(false); launcher.focus(); }
    });
    setInCall(false);
    root.call = null;
  }

  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount, { once: true });
})();
