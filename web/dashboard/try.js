// "Try it" on the agent page: a web call to this agent with the browser SDK. The call is issued by a
// same-origin, CSRF-protected dashboard endpoint, so no API key reaches the page.
import { connect } from '/static/callgate.js';
import { postJSON } from '/static/dashboard/dashboard.js';

const panel = document.getElementById('try');
const $ = (id) => document.getElementById(id);
let call = null;

function say(text) { $('try-status').textContent = text; }

function showTurn({ role, text, final, turnId }) {
  const list = $('try-transcript');
  const key = `${role}-${turnId ?? list.children.length}`;
  let li = list.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (!li) {
    li = document.createElement('li');
    li.className = `turn ${role}`;
    li.dataset.key = key;
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = role;
    li.append(who, document.createElement('span'));
    list.append(li);
  }
  li.lastChild.textContent = text;
  li.dataset.final = String(!!final);
}

function showMetrics(data) {
  const turn = data && (data.turn || data);
  if (!turn || turn.total_ms === undefined) return;
  const tr = document.createElement('tr');
  for (const v of [turn.seq ?? $('try-latency').tBodies[0].rows.length + 1, turn.endpointing_ms, turn.stt_ms,
    turn.agent_first_token_ms, turn.tts_first_audio_ms, turn.total_ms]) {
    const td = document.createElement('td');
    td.textContent = v ?? '—';
    tr.append(td);
  }
  $('try-latency').tBodies[0].append(tr);
}

function setConnected(on) {
  $('try-start').disabled = on;
  $('try-hangup').disabled = !on;
  $('try-input').disabled = !on;
  $('try-send').disabled = !on;
}

async function start() {
  const mode = $('try-mode').value;
  const transport = $('try-transport').value;
  setConnected(true);
  say('Connecting…');
  try {
    const web = await postJSON(`/dashboard/agents/${encodeURIComponent(panel.dataset.agentId)}/try`, { mode, transport });
    call = await connect({
      url: transport === 'webrtc' ? web.webrtc_offer_url : web.websocket_url,
      token: web.token,
      transport,
      iceServers: web.ice_servers || undefined,
      mode,
      microphone: mode !== 'text',
      onEvent: (name, detail) => {
        if (name === 'transcript') showTurn(detail);
        else if (name === 'metrics') showMetrics(detail);
        else if (name === 'ended') { say(`Ended (${detail.reason}).`); setConnected(false); call = null; }
      },
    });
    window.dashboardCall = call;
    say(`Connected: call ${call.id}.`);
    panel.dataset.callId = call.id;
  } catch (error) {
    say(`Could not call: ${error.message}`);
    setConnected(false);
  }
}

if (panel) {
  $('try-start').addEventListener('click', start);
  $('try-hangup').addEventListener('click', () => call && call.hangup());
  $('try-text').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = $('try-input').value.trim();
    if (call && text) { call.sendText(text); $('try-input').value = ''; }
  });
}
