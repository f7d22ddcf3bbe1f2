// Live calls: refresh the table every two seconds from /dashboard/live.json.
const body = document.querySelector('#live tbody');
const count = document.getElementById('live-count');

function row(call) {
  const tr = document.createElement('tr');
  const link = document.createElement('a');
  link.href = `/dashboard/calls/${encodeURIComponent(call.id)}`;
  link.textContent = call.id;
  const cells = [link, call.agent, `${call.status} (${call.seconds} s)`, `${call.kind} / ${call.transport}`];
  for (const value of cells) {
    const td = document.createElement('td');
    if (value instanceof Node) td.append(value); else td.textContent = value;
    tr.append(td);
  }
  return tr;
}

async function refresh() {
  try {
    const response = await fetch('/dashboard/live.json', { credentials: 'same-origin' });
    if (response.ok) {
      const calls = await response.json();
      body.replaceChildren(...calls.map(row));
      count.textContent = `${calls.length} live`;
    }
  } finally {
    setTimeout(refresh, 2000);
  }
}
if (body) setTimeout(refresh, 2000);
