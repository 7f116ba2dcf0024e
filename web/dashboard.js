// Rendezvous lobby dashboard: live stats (subscribe_stats), live room list
// (subscribe_rooms, falling back to polling GET /api/rooms), the games in
// progress (polling GET /api/rooms?status=active) with a Spectate link on
// rooms that have spectator places left, and a chart of the last five
// minutes drawn on a <canvas>.
import { connect } from './rendezvous.js';

const $ = (selector) => document.querySelector(selector);

const STAT_FIELDS = [
  ['total_rooms', 'Rooms'],
  ['waiting_rooms', 'Waiting rooms'],
  ['active_rooms', 'Active rooms'],
  ['finished_rooms', 'Finished rooms'],
  ['total_players', 'Players in rooms'],
  ['players_waiting', 'Players waiting'],
  ['connections', 'Connections'],
  ['matches_started', 'Matches started'],
  ['signals_relayed', 'Signals relayed'],
  ['signals_per_s', 'Signals / s'],
  ['uptime_s', 'Uptime'],
];
const ACCENT = { total_players: 'accent', signals_per_s: 'accent2', active_rooms: 'accent2' };
const WINDOW_MS = 5 * 60 * 1000;
const ROOMS_POLL_MS = 2000;
const ACTIVE_POLL_MS = 3000;
const STATS_POLL_MS = 1000;

const apiUrl = (path) => new URL(`./${path}`, location.href).toString();
const WS_URL = (() => {
  const u = new URL('./ws', location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.search = '';
  u.hash = '';
  return u.toString();
})();

const state = {
  client: null,
  prev: null, // {signals, at} of the previous stats sample
  samples: [], // {t, players, rooms, sps}
  rooms: new Map(), // waiting public rooms by id
  roomsMode: null, // 'live' | 'polling'
  roomsPollTimer: null,
  statsPollTimer: null,
};
window.__dashboard = state;

// ---- Stats ---------------------------------------------------------------------

function statCard(key, label) {
  let value = document.getElementById(`stat-${key}`);
  if (value) return value;
  const card = document.createElement('div');
  card.className = `stat ${ACCENT[key] || ''}`;
  const labelEl = document.createElement('div');
  labelEl.className = 'label';
  labelEl.textContent = label;
  value = document.createElement('div');
  value.className = 'value';
  value.id = `stat-${key}`;
  value.dataset.testid = `stat-${key}`;
  value.dataset.value = '';
  value.textContent = '—';
  card.append(labelEl, value);
  $('#stats').append(card);
  return value;
}

for (const [key, label] of STAT_FIELDS) statCard(key, label);

function formatUptime(s) {
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m) return `${m}m ${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

function setStat(key, raw, text) {
  const label = key.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
  const node = statCard(key, label);
  node.dataset.value = String(raw);
  node.textContent = text ?? (typeof raw === 'number' ? raw.toLocaleString('en-US') : String(raw));
}

function onStats(stats) {
  if (!stats || typeof stats !== 'object') return;
  const at = performance.now();
  let sps = null;
  if (typeof stats.signals_relayed === 'number') {
    if (state.prev && at > state.prev.at && stats.signals_relayed >= state.prev.signals) {
      sps = (stats.signals_relayed - state.prev.signals) / ((at - state.prev.at) / 1000);
    }
    state.prev = { signals: stats.signals_relayed, at };
  }
  for (const [key, value] of Object.entries(stats)) {
    if (typeof value === 'object') continue;
    if (key === 'uptime_s') setStat(key, value, formatUptime(value));
    else setStat(key, value);
  }
  if (sps !== null) setStat('signals_per_s', Math.round(sps * 10) / 10, sps.toFixed(1));
  $('#updated-at').textContent = new Date().toLocaleTimeString();

  state.samples.push({ t: Date.now(), players: stats.total_players ?? 0, rooms: stats.total_rooms ?? 0, sps: sps ?? 0 });
  const cutoff = Date.now() - WINDOW_MS;
  while (state.samples.length && state.samples[0].t < cutoff) state.samples.shift();
  drawChart();
}

async function pollStatsOnce() {
  try {
    const res = await fetch(apiUrl('api/stats'), { cache: 'no-store' });
    if (res.ok) onStats(await res.json());
  } catch { /* server down: the pill says so */ }
}

function startStatsPolling() {
  if (state.statsPollTimer) return;
  $('#stats-source').textContent = 'polling /api/stats';
  pollStatsOnce();
  state.statsPollTimer = setInterval(pollStatsOnce, STATS_POLL_MS);
}

function stopStatsPolling() {
  clearInterval(state.statsPollTimer);
  state.statsPollTimer = null;
}

// ---- Chart ---------------------------------------------------------------------

function niceMax(v) {
  if (v <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart() {
  const canvas = $('#chart');
  const rect = canvas.getBoundingClientRect();
  if (!rect.width || !rect.height) return;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(rect.width * dpr) || canvas.height !== Math.round(rect.height * dpr)) {
    canvas.width = Math.round(rect.width * dpr);
    canvas.height = Math.round(rect.height * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const w = rect.width;
  const h = rect.height;
  const css = getComputedStyle(document.documentElement);
  const grid = css.getPropertyValue('--line').trim() || '#333';
  const muted = css.getPropertyValue('--muted').trim() || '#999';
  ctx.clearRect(0, 0, w, h);

  const pad = { l: 34, r: 40, t: 10, b: 22 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  const samples = state.samples;
  const now = Date.now();
  // The time axis grows with the data, from one minute up to five.
  const span = Math.min(WINDOW_MS, Math.max(60_000, samples.length ? now - samples[0].t : 0));
  const t0 = now - span;
  const leftMax = niceMax(Math.max(1, ...samples.map((s) => Math.max(s.players, s.rooms))));
  const rightMax = niceMax(Math.max(1, ...samples.map((s) => s.sps)));
  const x = (t) => pad.l + ((t - t0) / span) * pw;

  ctx.font = '11px system-ui, sans-serif';
  ctx.lineWidth = 1;
  ctx.strokeStyle = grid;
  ctx.fillStyle = muted;
  for (let i = 0; i <= 4; i += 1) {
    const y = pad.t + ph - (i / 4) * ph;
    ctx.beginPath();
    ctx.moveTo(pad.l, y + 0.5);
    ctx.lineTo(pad.l + pw, y + 0.5);
    ctx.stroke();
    ctx.textAlign = 'right';
    ctx.fillText(String(Math.round((leftMax * i) / 4 * 10) / 10), pad.l - 6, y + 4);
    ctx.textAlign = 'left';
    ctx.fillText(String(Math.round((rightMax * i) / 4 * 10) / 10), pad.l + pw + 6, y + 4);
  }
  ctx.textAlign = 'center';
  const step = span <= 60_000 ? 15_000 : span <= 150_000 ? 30_000 : 60_000;
  for (let back = 0; back <= span; back += step) {
    const label = back === 0 ? 'now' : back % 60_000 === 0 ? `-${back / 60_000}m` : `-${back / 1000}s`;
    ctx.fillText(label, x(now - back), h - 6);
  }

  const series = [
    { key: 'players', color: '#6d8bff', max: leftMax },
    { key: 'rooms', color: '#22c5a0', max: leftMax },
    { key: 'sps', color: '#f5b84a', max: rightMax },
  ];
  for (const s of series) {
    if (!samples.length) break;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    ctx.beginPath();
    samples.forEach((sample, i) => {
      const px = x(sample.t);
      const py = pad.t + ph - (Math.min(sample[s.key], s.max) / s.max) * ph;
      if (i === 0) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
    });
    ctx.stroke();
  }
  $('#chart-range').textContent = samples.length ? `${samples.length} samples` : 'waiting for data';
}

window.addEventListener('resize', drawChart);

// ---- Rooms ---------------------------------------------------------------------

function age(createdAt) {
  const t = Date.parse(createdAt);
  if (Number.isNaN(t)) return '';
  return formatUptime((Date.now() - t) / 1000);
}

function roomRow(room, flash) {
  const tr = document.createElement('tr');
  tr.dataset.roomId = room.room_id;
  tr.dataset.status = room.status;
  tr.dataset.players = String(room.players ? room.players.length : 0);
  const places = Number(room.max_spectators) || 0;
  const watchers = room.spectators ? room.spectators.length : 0;
  tr.dataset.spectators = String(watchers);
  tr.dataset.maxSpectators = String(places);
  if (flash) tr.className = 'flash';
  const host = room.players?.find((p) => p.player_id === room.host);
  const cells = [
    [String(room.room_id).slice(0, 8), 'mono'],
    [room.mode ?? ''],
    [`${room.players ? room.players.length : 0} / ${room.max_players}`],
    [host ? host.name : ''],
    [age(room.created_at), 'hide-narrow'],
  ];
  for (const [text, cls] of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.append(td);
  }
  // Watching: the demo joins as a spectator (1.1) while places are left.
  const watch = document.createElement('td');
  watch.className = 'watch';
  if (places > watchers) {
    const link = document.createElement('a');
    link.className = 'btn small';
    link.href = `./?spectate=${encodeURIComponent(room.room_id)}`;
    link.dataset.testid = 'spectate';
    link.textContent = 'Spectate';
    link.title = `${watchers} of ${places} spectator places taken`;
    watch.append(link);
  } else if (places > 0) {
    watch.textContent = 'full';
    watch.classList.add('muted');
  }
  tr.append(watch);
  tr.title = room.room_id;
  return tr;
}

function renderTable(table, rooms, countEl, flashIds = new Set()) {
  const tbody = table.querySelector('tbody');
  const list = [...rooms].sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
  if (!list.length) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    const td = document.createElement('td');
    td.colSpan = 6;
    td.textContent = 'No rooms';
    tr.append(td);
    tbody.replaceChildren(tr);
  } else {
    tbody.replaceChildren(...list.map((r) => roomRow(r, flashIds.has(r.room_id))));
  }
  countEl.textContent = String(list.length);
}

function renderRooms(flashId) {
  renderTable($('#rooms-table'), state.rooms.values(), $('#rooms-count'), new Set(flashId ? [flashId] : []));
}

function setRoomsMode(mode) {
  state.roomsMode = mode;
  $('#rooms-source').textContent = mode === 'live' ? 'live' : 'polling every 2 s';
  $('#rooms-source').dataset.mode = mode;
}

async function pollRoomsOnce() {
  try {
    const res = await fetch(apiUrl('api/rooms?status=waiting&limit=500'), { cache: 'no-store' });
    if (!res.ok) return;
    const body = await res.json();
    state.rooms = new Map((body.rooms || []).map((r) => [r.room_id, r]));
    renderRooms();
  } catch { /* keep the last list */ }
}

function startRoomsPolling() {
  setRoomsMode('polling');
  if (state.roomsPollTimer) return;
  pollRoomsOnce();
  state.roomsPollTimer = setInterval(pollRoomsOnce, ROOMS_POLL_MS);
}

function stopRoomsPolling() {
  clearInterval(state.roomsPollTimer);
  state.roomsPollTimer = null;
}

async function pollActive() {
  try {
    const res = await fetch(apiUrl('api/rooms?status=active&limit=500'), { cache: 'no-store' });
    if (!res.ok) return;
    const body = await res.json();
    renderTable($('#active-rooms-table'), body.rooms || [], $('#active-count'));
  } catch { /* keep the last list */ }
}

// ---- Connection ----------------------------------------------------------------

function setConn(s, text) {
  const pill = $('#conn-status');
  pill.dataset.state = s;
  pill.textContent = text || s;
}

async function subscribe(client) {
  try {
    const { stats } = await client.subscribeStats({ intervalMs: 1000 });
    stopStatsPolling();
    $('#stats-source').textContent = 'live';
    onStats(stats);
  } catch (err) {
    console.warn('subscribe_stats failed, polling /api/stats', err);
    startStatsPolling();
  }
  try {
    const { rooms } = await client.subscribeRooms();
    stopRoomsPolling();
    setRoomsMode('live');
    state.rooms = new Map((rooms || []).map((r) => [r.room_id, r]));
    renderRooms();
  } catch (err) {
    console.warn('subscribe_rooms failed, polling /api/rooms', err);
    startRoomsPolling();
  }
}

async function start() {
  renderRooms();
  renderTable($('#active-rooms-table'), [], $('#active-count'));
  drawChart();
  pollActive();
  setInterval(pollActive, ACTIVE_POLL_MS);
  setConn('connecting', 'connecting…');
  let client;
  try {
    client = await connect(WS_URL, { name: 'dashboard' });
  } catch (err) {
    setConn('offline', 'offline');
    startStatsPolling();
    startRoomsPolling();
    setTimeout(start, 5000); // try the live feed again later
    return;
  }
  state.client = client;
  setConn('online', 'live');
  client.on('stats', (m) => onStats(m.stats));
  client.on('room_listed', (m) => {
    if (state.roomsMode !== 'live' || !m.room) return;
    if (m.room.status && m.room.status !== 'waiting') return;
    state.rooms.set(m.room.room_id, m.room);
    renderRooms(m.room.room_id);
  });
  client.on('room_updated', (m) => {
    if (state.roomsMode !== 'live' || !m.room) return;
    if (m.room.status && m.room.status !== 'waiting') state.rooms.delete(m.room.room_id);
    else state.rooms.set(m.room.room_id, m.room);
    renderRooms();
  });
  client.on('room_delisted', (m) => {
    if (state.roomsMode !== 'live') return;
    state.rooms.delete(m.room_id);
    renderRooms();
  });
  client.on('reconnecting', ({ attempt }) => {
    setConn('reconnecting', `reconnecting (${attempt})…`);
    startStatsPolling();
  });
  client.on('open', () => {
    setConn('online', 'live');
    state.prev = null;
    subscribe(client); // subscriptions belong to a connection: renew them
  });
  client.on('close', ({ willReconnect }) => {
    if (!willReconnect) setConn('offline', 'offline');
  });
  await subscribe(client);
}

start();
