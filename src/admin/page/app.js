// The status page of an aop node (or gateway): reads status.json every 2 s and draws it.
// Every piece of data goes into the DOM as text (append of strings, textContent), never as
// HTML: agent names, descriptions and URLs are other people's input.
'use strict';

const REFRESH_MS = 2000;
// Zones the reader folded; kept across refreshes.
const folded = new Set();

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function table(target, headers, rows) {
  const head = el('tr', null, ...headers.map(([text, cls]) => el('th', cls, text)));
  target.replaceChildren(el('thead', null, head), el('tbody', null, ...rows));
}

function row(...cells) {
  return el('tr', null, ...cells.map((cell) =>
    Array.isArray(cell) ? el('td', cell[1], cell[0]) : el('td', null, cell)));
}

function show(id, visible) {
  document.getElementById(id).hidden = !visible;
}

function duration(secs) {
  const s = Math.floor(secs);
  const parts = [[Math.floor(s / 86400), 'd'], [Math.floor(s / 3600) % 24, 'h'],
    [Math.floor(s / 60) % 60, 'm'], [s % 60, 's']];
  const first = parts.findIndex(([n]) => n > 0);
  return parts.slice(first < 0 ? 3 : first).map(([n, u]) => n + u).join(' ');
}

function clock(ms) {
  const d = new Date(ms);
  const pad = (n, w) => String(n).padStart(w || 2, '0');
  return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()) +
    '.' + pad(d.getMilliseconds(), 3);
}

// Zones nested under the closest enclosing zone of the same list.
function tree(zones) {
  const byName = new Map(zones.map((z) => [z.zone, { zone: z, children: [] }]));
  const roots = [];
  for (const node of byName.values()) {
    const name = node.zone.zone;
    let parent = null;
    for (const other of byName.keys()) {
      const inside = other === '.' ? name !== '.' : name.endsWith('.' + other);
      if (other !== name && inside && (!parent || other.length > parent.length)) parent = other;
    }
    (parent ? byName.get(parent).children : roots).push(node);
  }
  return roots;
}

// "in 42s" / "42s ago" from a Unix ms time and the document's now.
function relative(ms, now) {
  const secs = (ms - now) / 1000;
  return secs >= 0 ? 'in ' + duration(secs) : duration(-secs) + ' ago';
}

function endpointNote(e, now) {
  const parts = ['tool ' + e.tool, 'prio ' + e.priority, 'weight ' + e.weight];
  if (e.source) parts.push(e.source);
  if (e.health && e.health !== 'unknown') {
    let health = e.health;
    if (e.health_since_unix) health += ' since ' + relative(e.health_since_unix * 1000, now);
    if (e.health_error) health += ' (' + e.health_error + ')';
    parts.push(health);
  }
  if (e.lease_expires_unix_ms) parts.push('lease ends ' + relative(e.lease_expires_unix_ms, now));
  return ' ' + parts.join(' · ');
}

function agentTable(agents, total, limit, now) {
  const withSource = agents.some((a) => a.source);
  const body = agents.map((agent) => {
    const endpoints = el('div', null, ...agent.endpoints.map((e) => el('div', 'endpoint mono',
      e.url, el('span', 'note', endpointNote(e, now)))));
    const labels = agent.tags.concat(agent.capabilities).join(', ');
    const cells = [[agent.name, 'agent-name mono']];
    if (withSource) cells.push([agent.source || '-', 'source-' + (agent.source || 'unknown')]);
    cells.push([agent.description, 'description'], [labels, 'note'], endpoints);
    return row(...cells);
  });
  const wrap = el('div');
  if (agents.length === 0) {
    wrap.append(el('p', 'note', 'no agents'));
    return wrap;
  }
  const t = el('table', 'agents');
  const headers = [['agent']];
  if (withSource) headers.push(['source']);
  headers.push(['description'], ['tags, capabilities'], ['endpoints']);
  table(t, headers, body);
  wrap.append(t);
  if (total > agents.length) {
    wrap.append(el('p', 'note', 'showing the first ' + agents.length + ' of ' + total +
      ' agents (at most ' + limit + ' per zone)'));
  }
  return wrap;
}

function secondaryLine(sec, now) {
  const parts = [sec.url];
  if (sec.listed) parts.push('listed in the zone');
  if (sec.serial === null || sec.serial === undefined) {
    parts.push('no transfer since this node started');
  } else {
    parts.push('at serial ' + sec.serial + (sec.lag ? ', ' + sec.lag + ' behind' : ', up to date'));
    parts.push('last transfer ' + relative(sec.last_transfer_unix_ms, now) +
      (sec.last_transfer_full ? ' (full)' : ''));
  }
  return el('div', 'secondary mono', '⇉ secondary ' + parts.join(' · '));
}

function zoneNode(node, limit, now) {
  const z = node.zone;
  const details = el('details', 'zone');
  details.dataset.zone = z.zone;
  details.open = !folded.has(z.zone);
  details.addEventListener('toggle', () => {
    if (details.open) folded.delete(z.zone); else folded.add(z.zone);
  });
  const meta = [];
  if (z.role) meta.push(z.role + (z.primary ? ' of ' + z.primary : ''));
  if (z.serial !== undefined && z.serial !== null) meta.push('serial ' + z.serial);
  meta.push(z.agent_count + ' agents');
  if (z.served === false) meta.push('NOT SERVED');
  if (z.last_refresh_unix_ms) meta.push('refreshed ' + relative(z.last_refresh_unix_ms, now));
  if (z.last_refresh_secs !== undefined && z.last_refresh_secs !== null) {
    meta.push('refreshed ' + duration(z.last_refresh_secs) + ' ago');
  }
  if (z.watching) meta.push('watching');
  if (z.watchers) meta.push(z.watchers + ' watch stream' + (z.watchers === 1 ? '' : 's'));
  if (z.error) meta.push('error: ' + z.error);
  const summary = el('summary', null, el('span', 'zone-name mono', z.zone),
    el('span', 'zone-meta', meta.join(' · ')));
  details.append(summary);
  for (const sec of z.secondaries || []) details.append(secondaryLine(sec, now));
  for (const d of z.delegations || []) {
    details.append(el('div', 'delegation mono',
      '→ ' + d.zone + ' delegated to ' + d.servers.join(', ')));
  }
  details.append(agentTable(z.agents, z.agent_count, limit, now));
  for (const child of node.children) details.append(zoneNode(child, limit, now));
  return details;
}

function drawHeader(s) {
  const title = s.kind === 'gateway' ? 'aop gateway' : 'aop node ' + s.node_id;
  document.getElementById('title').textContent = title;
  document.title = title;
  const state = document.getElementById('state');
  state.textContent = s.ready ? 'ready' : 'not ready';
  state.className = 'badge ' + (s.ready ? 'ok' : 'bad');
  const parts = ['v' + s.version, 'up ' + duration(s.uptime_secs)];
  if (s.grpc) parts.push('gRPC ' + s.grpc);
  if (s.dns) parts.push('DNS ' + s.dns);
  if (s.resolver) parts.push('resolver ' + s.resolver);
  document.getElementById('summary').textContent = parts.join(' · ');
  show('not-ready-section', s.not_ready.length > 0);
  document.getElementById('not-ready').replaceChildren(...s.not_ready.map((l) => el('li', null, l)));
}

function drawZones(zones, limit, title, now) {
  document.getElementById('zones-title').textContent = title;
  document.getElementById('zones-note').textContent = zones.length === 0 ? 'none' :
    'at most ' + limit + ' agents are listed per zone';
  document.getElementById('zones').replaceChildren(
    ...tree(zones).map((n) => zoneNode(n, limit, now)));
}

function drawNode(s) {
  drawZones(s.zones, s.agents_limit, 'Zones this node serves', s.now_unix_ms);
  show('members-section', Array.isArray(s.members));
  if (Array.isArray(s.members)) {
    table(document.getElementById('members'),
      [['node'], ['state'], ['gRPC'], ['gossip'], ['zones (role, serial)'], ['load (req/s)', 'num']],
      s.members.map((m) => row(
        (m.node_id || '?') + (m.is_self ? ' (this node)' : ''),
        [m.state, 'member-' + m.state],
        [m.grpc || '-', 'mono'], [m.gossip, 'mono'],
        [m.zones.map((z) => z.zone + ' (' + z.role + ', ' + z.serial + ')').join(', ') || '-', 'mono'],
        [m.load === null || m.load === undefined ? '-' : m.load, 'num'])));
  }
  show('cuts-section', s.cached_cuts.length > 0);
  table(document.getElementById('cuts'), [['zone'], ['servers'], ['state']],
    s.cached_cuts.map((c) => row([c.zone, 'mono'], [c.servers.join(', '), 'mono'],
      c.fresh ? 'fresh' : 'stale')));
  show('cache-section', true);
  const num = (n) => [n, 'num'];
  table(document.getElementById('cache'),
    [['level'], ['entries', 'num'], ['bytes', 'num'], ['hits', 'num'], ['misses', 'num'],
      ['hit ratio', 'num'], ['evictions', 'num'], ['stale served', 'num']],
    s.cache.map((l) => {
      const asked = l.hits + l.misses;
      const ratio = asked ? (100 * l.hits / asked).toFixed(1) + ' %' : '-';
      return row(l.level, num(l.entries), num(l.weighted_bytes), num(l.hits), num(l.misses),
        num(ratio), num(l.evictions), num(l.stale_served));
    }));
  show('recent-section', true);
  table(document.getElementById('recent'),
    [['time'], ['door'], ['name'], ['type / method'], ['outcome'], ['latency', 'num'],
      ['request id']],
    s.recent.map((q) => row(clock(q.at_unix_ms), q.door, [q.name || '-', 'mono'], q.kind,
      [q.outcome, 'outcome-' + q.outcome], [(q.latency_us / 1000).toFixed(3) + ' ms', 'num'],
      [q.request_id, 'mono request-id'])));
}

function drawGateway(s) {
  drawZones(s.mounts.map((m) => Object.assign({ role: 'mounted' }, m)), s.agents_limit,
    'Mounted zones', s.now_unix_ms);
  show('gateway-section', true);
  const mcp = s.mcp_sessions === null || s.mcp_sessions === undefined ? 'stdio' :
    s.mcp_sessions + ' open';
  table(document.getElementById('gateway'),
    [['tools'], ['MCP sessions'], ['name cache'], ['agent sessions']],
    [row(s.tools, mcp, s.name_cache.entries + ' entries, ' + s.name_cache.hits + ' hits, ' +
      s.name_cache.misses + ' misses', s.sessions.open + ' open, ' + s.sessions.opened +
      ' opened')]);
  table(document.getElementById('breakers'), [['endpoint'], ['state']],
    s.breakers.length ? s.breakers.map((b) => row([b.url, 'mono'], b.state)) :
      [row('none open', '')]);
}

async function refresh() {
  const error = document.getElementById('error');
  try {
    const response = await fetch('status.json', { cache: 'no-store' });
    if (!response.ok) throw new Error('status.json: HTTP ' + response.status);
    const s = await response.json();
    drawHeader(s);
    if (s.kind === 'gateway') drawGateway(s); else drawNode(s);
    error.hidden = true;
    document.getElementById('footer').textContent = 'updated ' + clock(Date.now()) +
      ', every ' + REFRESH_MS / 1000 + ' s';
    document.body.dataset.loaded = 'true';
  } catch (e) {
    error.textContent = 'cannot read status: ' + e.message;
    error.hidden = false;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
