// The demo page: create a web call through the development route, join it with the SDK,
// and show the live transcript and per-turn latency.
import { CallError, connect, openMicrophone } from './callgate.js';

const $ = (id) => document.getElementById(id);
const ui = {
  mode: $('mode'),
  transport: $('transport'),
  call: $('call'),
  mute: $('mute'),
  hangup: $('hangup'),
  status: $('status'),
  transcript: $('transcript'),
  form: $('text-form'),
  text: $('text'),
  send: document.querySelector('#text-form button'),
  userBadge: $('user-speaking'),
  agentBadge: $('agent-speaking'),
  level: $('level'),
  latency: $('latency'),
  latencyRows: $('latency-rows'),
};

let call = null;
let bubbles = new Map(); // "role:turnId" -> <li>
let levelTimer = null;
let latencyTurns = 0;

function setStatus(text, { error = false } = {}) {
  ui.status.textContent = text;
  ui.status.classList.toggle('error', error);
}

function setInCall(inCall) {
  ui.call.disabled = inCall;
  ui.transport.disabled = inCall; // chosen when the call is created
  ui.hangup.disabled = !inCall;
  ui.mute.disabled = !inCall || call?.mode === 'text';
  ui.text.disabled = !inCall;
  ui.send.disabled = !inCall;
}

function showTranscript({ role, text, final, turnId, interrupted }) {
  const key = `${role}:${turnId}`;
  let li = bubbles.get(key);
  if (!li) {
    li = document.createElement('li');
    li.className = role;
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = role === 'user' ? 'You' : 'Agent';
    li.append(who, document.createElement('span'));
    ui.transcript.append(li);
    bubbles.set(key, li);
  }
  li.lastChild.textContent = text;
  li.classList.toggle('interim', !final);
  li.classList.toggle('interrupted', !!interrupted);
  li.scrollIntoView({ block: 'nearest' });
}

function showMetrics(data) {
  const turn = data.turn;
  if (!turn) return;
  const fields = ['endpointing_ms', 'stt_ms', 'agent_first_token_ms', 'tts_first_audio_ms', 'total_ms'];
  const row = document.createElement('tr');
  const label = document.createElement('td');
  latencyTurns += 1;
  label.textContent = `${latencyTurns}${turn.interrupted ? ' (interrupted)' : ''}`;
  row.append(label);
  for (const field of fields) {
    const cell = document.createElement('td');
    const value = turn[field];
    cell.textContent = typeof value === 'number' ? Math.round(value) : '—';
    row.append(cell);
  }
  ui.latencyRows.append(row);
  ui.latency.hidden = false;
}

async function createWebCall(mode, transport) {
  const response = await fetch('/demo/web-call', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ mode, transport }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = body.message || body.detail || body.error || response.statusText;
    const text = typeof message === 'string' ? message : JSON.stringify(message);
    throw new Error(`could not create the call (${response.status}): ${text}`);
  }
  return body;
}

function onEvent(name, detail) {
  switch (name) {
    case 'connected':
      setStatus(`Connected (call ${detail.callId ?? '?'}, ${detail.mode}, ${ui.transport.value}).`);
      break;
    case 'transcript':
      showTranscript(detail);
      break;
    case 'user-speaking':
      ui.userBadge.classList.toggle('on', detail);
      break;
    case 'agent-speaking':
      ui.agentBadge.classList.toggle('on', detail);
      break;
    case 'metrics':
      showMetrics(detail);
      break;
    case 'mode':
      ui.mode.value = detail.mode;
      setInCall(true);
      break;
    case 'transfer':
      setStatus(`Transferring to ${detail.target}…`);
      break;
    case 'error':
      setStatus(`Error: ${detail.message}`, { error: true });
      break;
    case 'ended':
      onEnded(detail);
      break;
    default:
      break;
  }
}

function onEnded({ reason, code }) {
  setStatus(`Call ended: ${reason} (${code}).`, { error: code !== 1000 });
  clearInterval(levelTimer);
  ui.level.value = 0;
  ui.userBadge.classList.remove('on');
  ui.agentBadge.classList.remove('on');
  ui.mute.setAttribute('aria-pressed', 'false');
  ui.mute.textContent = 'Mute';
  call = null;
  window.demoCall = null;
  setInCall(false);
}

/** Where and how to join the call the server created, for the SDK's `connect()`. */
function joinOptions(webCall, transport) {
  if (transport === 'webrtc') {
    return { transport, url: webCall.webrtc_offer_url, token: webCall.token, iceServers: webCall.ice_servers };
  }
  return { url: webCall.websocket_url };
}

async function startCall() {
  const mode = ui.mode.value;
  const transport = ui.transport.value;
  setInCall(true);
  ui.hangup.disabled = true;
  ui.transcript.replaceChildren();
  ui.latencyRows.replaceChildren();
  ui.latency.hidden = true;
  bubbles = new Map();
  latencyTurns = 0;
  // Created inside the click handler so that browsers with strict autoplay rules let it play.
  const audioContext = mode === 'text' ? null : new AudioContext({ latencyHint: 'interactive' });
  let microphone = null; // opened here in voice modes; the SDK opens it if the mode changes to voice later
  try {
    if (mode !== 'text') {
      // Ask for the microphone before creating the call: the call token has a join deadline.
      setStatus('Waiting for the microphone…');
      microphone = await openMicrophone();
    }
    setStatus('Creating the call…');
    const webCall = await createWebCall(mode, transport);
    setStatus(transport === 'webrtc' ? 'Connecting over WebRTC…' : 'Connecting…');
    call = await connect({
      ...joinOptions(webCall, transport),
      mode,
      microphone: microphone ?? true,
      audioContext,
      onEvent,
    });
    window.demoCall = call;
    call.on('ended', () => {
      if (microphone) for (const track of microphone.getTracks()) track.stop();
      setTimeout(() => audioContext?.close().catch(() => {}), 3000);
    });
    setInCall(true);
    levelTimer = setInterval(() => {
      if (call) ui.level.value = Math.min(1, call.stats.inputLevel * 4);
    }, 100);
    if (mode === 'text') ui.text.focus();
  } catch (error) {
    if (microphone) for (const track of microphone.getTracks()) track.stop();
    audioContext?.close().catch(() => {});
    const detail = error instanceof CallError && error.code ? ` [${error.code}]` : '';
    setStatus(`Could not start the call: ${error.message}${detail}`, { error: true });
    call = null;
    setInCall(false);
  }
}

ui.call.addEventListener('click', startCall);
ui.hangup.addEventListener('click', () => {
  ui.hangup.disabled = true;
  setStatus('Hanging up…');
  call?.hangup();
});
ui.mute.addEventListener('click', () => {
  if (!call) return;
  call.mute(!call.muted);
  ui.mute.setAttribute('aria-pressed', String(call.muted));
  ui.mute.textContent = call.muted ? 'Unmute' : 'Mute';
});
ui.mode.addEventListener('change', async () => {
  if (!call) return;
  const wanted = ui.mode.value;
  try {
    await call.setMode(wanted);
    setStatus(`Mode: ${call.mode}.`);
  } catch (error) {
    ui.mode.value = call?.mode ?? wanted;
    setStatus(`Could not switch mode: ${error.message}`, { error: true });
  }
  setInCall(!!call);
});
ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.text.value.trim();
  if (!call || !text) return;
  try {
    call.sendText(text);
    ui.text.value = '';
  } catch (error) {
    setStatus(`Could not send: ${error.message}`, { error: true });
  }
});
