-- Rendezvous cluster lobby: every change of rooms, seats and players, as one
-- atomic script. Loaded once per Redis (SCRIPT LOAD) and called by SHA with
--   ARGV[1] = operation, ARGV[2] = calling node id, ARGV[3] = the operation's
--   arguments as one JSON object with named fields (built from typed structs
--   in src/backend/redis/store/ops.rs).
-- Each operation is a function of the table OPS below, taking those
-- arguments. Raw JSON that must keep its exact text (room and player data,
-- results, rids) travels as strings inside the object, never decoded here:
-- Lua's cjson would round numbers to 14 digits and reorder keys.
--
-- The script keeps the same derived data as the in-memory engine, in the
-- same way: every change to a room goes through `commit`, which compares
-- the room's footprint before and after and moves the counters, the
-- matchmaking sorted sets and the listings in step.
--
-- Events are not sent by the caller but published from here, to the
-- channel of each node with a recipient, in the order the state changed.
-- Recipients whose seat is held (disconnected) get the notice appended to
-- their pending list instead, for their return on any node.
--
-- Keys (all under "rv:"): room:<id> (JSON), code:<CODE>, pl:<player> (hash),
-- tok:<token>, mm:<bucket> (zset, seq), bf:<bucket> (zset, seq: active
-- backfill rooms with a free seat), list:<w|a>[:<mode>] (zset, seq),
-- stats (hash), seq, grace (zset, deadline), timer (zset, deadline),
-- pend:<player> (list), pendx:<player>, nodes (set), beats (zset), conns (hash), cfg (hash),
-- nodepl:<node> (set), gen, listwatch (set of nodes); tickets of
-- queue_match (1.1): tk:<id> (hash), tqs:<pool> (zset, skill), tqa:<pool>
-- (zset, seq), tqt (zset, queued ms), tqw (zset, when a widening window
-- stops), tqp (set of pools), tqlast,
-- tqwoken (set); see "tickets" below; parties (1.1):
-- pty:<id> (JSON: id, code, m = members in join order, max), ptc:<CODE>.
-- The script computes key names itself, so it needs a single Redis (or a
-- primary with replicas), not Redis Cluster.
--
-- The operations, named as on the wire where a request maps to one, and the
-- Rust that does the same in memory (`Lobby` in src/lobby/, driven by
-- src/backend/memory.rs); the node's side is src/backend/redis/ (the
-- arguments in src/backend/redis/store/ops.rs and commands.rs):
--
--   operation          in memory (src/lobby/)
--   hello              players.rs   Lobby::connect (+ issue_token)
--   bye                players.rs   Lobby::disconnect
--   keep               (cluster only: a node keeps its players alive)
--   create_room        seats.rs     Lobby::create_room
--   join_room          seats.rs     Lobby::join_room
--   find_match         seats.rs     Lobby::find_match
--   queue_match        queue.rs     Lobby::queue_match
--   cancel_match       queue.rs     Lobby::cancel_match
--   create_party       party.rs     Lobby::create_party
--   join_party         party.rs     Lobby::join_party
--   leave_party        party.rs     Lobby::leave_party
--   leave_room         seats.rs     Lobby::leave_room
--   start_game         actions.rs   Lobby::start_game
--   finish_game        actions.rs   Lobby::finish_game
--   set_room_data      actions.rs   Lobby::set_room_data
--   set_player_data    actions.rs   Lobby::set_player_data
--   kick               actions.rs   Lobby::kick
--   chat               actions.rs   Lobby::chat
--   set_ready          actions.rs   Lobby::set_ready
--   send               actions.rs   Lobby::message_targets (memory.rs relays)
--   signal             actions.rs   Lobby::check_signal (memory.rs relays)
--   close_room         seats.rs     Lobby::close_room
--   announce           (memory.rs: every connection's queue)
--   disconnect_player  players.rs   Lobby::remove_player
--   tick               timers.rs    Lobby::tick
--   beat, leave_node   (cluster only: node liveness and hand-over)
--   watch              (memory.rs: the listing subscribers)
--   stats              derived.rs   Lobby::stats
--   list_rooms         derived.rs   Lobby::list_rooms
--   check_invariants   derived.rs   Lobby::check_invariants
--   footprint          derived.rs   Lobby::footprint

local P = 'rv:'
local OP = ARGV[1]
local ME = ARGV[2]
local A = cjson.decode(ARGV[3] or '{}')

-- Redis's clock in ms, read once and only by the operations that need it
-- (a relayed signal does not).
local NOW_MS = nil
local function now()
  if NOW_MS == nil then
    local t = redis.call('TIME')
    NOW_MS = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW_MS
end

-- Redis's clock as the wire writes times (RFC 3339, ms, Z), for changes
-- made by operations that bring no `now` of their own.
local function iso_now()
  local ms = now()
  local s = math.floor(ms / 1000)
  local days, rem = math.floor(s / 86400), s % 86400
  -- Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, ms % 1000)
end

-- The request's `now` (the node's clock), or Redis's.
local function stamp()
  return A.now or iso_now()
end

local function fail(code, msg)
  return cjson.encode({ e = code, m = msg })
end

-- A string quoted as Rust's `{:?}` shows it (the in-memory engine's
-- messages), so both engines word a refusal alike.
local function q(s)
  local out = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == '\\' then return '\\\\' end
    if c == '\n' then return '\\n' end
    if c == '\r' then return '\\r' end
    if c == '\t' then return '\\t' end
    if c == '\0' then return '\\0' end
    return string.format('\\u{%x}', string.byte(c))
  end)
  return '"' .. out .. '"'
end

-- ---------------------------------------------------------------- players

local function player(pid)
  local v = redis.call('HMGET', P .. 'pl:' .. pid, 'name', 'room', 'node', 'conn', 'epoch', 'tok', 'tk', 'pt')
  if not v[1] then return nil end
  return { id = pid, name = v[1], room = v[2] or '', node = v[3] or '', conn = v[4] == '1',
           epoch = tonumber(v[5] or '0'), tok = v[6] or '', tk = v[7] or '', pt = v[8] or '' }
end

-- Live connections per node (hash conns: node -> count), changed with the
-- `conn` flag of players so `connections` is exact.
local function count_conn(node, delta)
  if node ~= nil and node ~= '' then redis.call('HINCRBY', P .. 'conns', node, delta) end
end

-- ------------------------------------------------------ ticket storage
-- A queued ticket (queue_match): hash tk:<id> with its players (pl, JSON
-- list), its request (spec: the JSON text Rust built, decoded here, never
-- re-encoded: cjson writes numbers rounded), seq, q (queued, ms), qa
-- (queued_at text), pool, away (players whose connection is gone). It is
-- indexed in its pool by skill (tqs, members "<16-digit seq>:<id>" so equal
-- skills sort by age) and by age (tqa), and by time in tqt; its expiry is
-- timer t:<id>. A player's hash names its ticket (tk).

local function num(x) return string.format('%.17g', x) end

local function tmember(t) return string.format('%016d', t.seq) .. ':' .. t.id end

local function load_ticket(id)
  if id == nil or id == '' then return nil end
  local v = redis.call('HMGET', P .. 'tk:' .. id, 'pl', 'spec', 'seq', 'q', 'qa', 'pool', 'away')
  if not v[1] then return nil end
  local t = cjson.decode(v[2])
  t.id = id
  t.pl = cjson.decode(v[1])
  t.seq = tonumber(v[3])
  t.q = tonumber(v[4])
  t.qa = v[5]
  t.pool = v[6]
  t.away = tonumber(v[7] or '0')
  return t
end

local function add_ticket(t, spec_raw, ttl_ms)
  redis.call('HSET', P .. 'tk:' .. t.id, 'pl', cjson.encode(t.pl), 'spec', spec_raw, 'seq', t.seq,
    'q', t.q, 'qa', t.qa, 'pool', t.pool, 'away', t.away)
  redis.call('ZADD', P .. 'tqs:' .. t.pool, num(t.skill or 0), tmember(t))
  redis.call('ZADD', P .. 'tqa:' .. t.pool, t.seq, t.id)
  redis.call('ZADD', P .. 'tqt', t.q, t.id)
  redis.call('SADD', P .. 'tqp', t.pool)
  redis.call('ZADD', P .. 'timer', t.q + ttl_ms, 't:' .. t.id)
  -- A window that widens: indexed by when it stops (capped at a day).
  if t.skill ~= nil and t.wr > 0 and t.wm > t.w0 then
    local ms = math.floor(math.min((t.wm - t.w0) / t.wr, 86400) * 1000)
    redis.call('ZADD', P .. 'tqw', t.q + ms, t.id)
  end
  for _, pid in ipairs(t.pl) do redis.call('HSET', P .. 'pl:' .. pid, 'tk', t.id) end
  redis.call('HINCRBY', P .. 'stats', 'tickets_queued', 1)
end

-- Takes a queued ticket out of the queue (formed, cancelled, expired).
local function drop_ticket(t)
  if redis.call('DEL', P .. 'tk:' .. t.id) == 0 then return end
  redis.call('ZREM', P .. 'tqs:' .. t.pool, tmember(t))
  redis.call('ZREM', P .. 'tqa:' .. t.pool, t.id)
  if redis.call('ZCARD', P .. 'tqa:' .. t.pool) == 0 then redis.call('SREM', P .. 'tqp', t.pool) end
  redis.call('ZREM', P .. 'tqt', t.id)
  redis.call('ZREM', P .. 'tqw', t.id)
  redis.call('ZREM', P .. 'timer', 't:' .. t.id)
  redis.call('SREM', P .. 'tqwoken', t.id)
  for _, pid in ipairs(t.pl) do redis.call('HDEL', P .. 'pl:' .. pid, 'tk') end
  redis.call('HINCRBY', P .. 'stats', 'tickets_queued', -1)
end

-- Defined with the parties below: a forgotten player leaves its party.
local drop_from_party
local party_changed
-- Defined with the tickets below: a backfill seat that opens is offered.
local offer_seats
-- Defined with `start` below; `leave_with` uses it (1.2).
local start_if_ready

local function forget(pid)
  local p = player(pid)
  if not p then return end
  if p.pt ~= '' then drop_from_party(pid, true) end
  if p.tk ~= '' then
    local t = load_ticket(p.tk)
    if t then drop_ticket(t) end
  end
  if p.tok ~= '' then redis.call('DEL', P .. 'tok:' .. p.tok) end
  if p.node ~= '' then redis.call('SREM', P .. 'nodepl:' .. p.node, pid) end
  redis.call('DEL', P .. 'pl:' .. pid, P .. 'pend:' .. pid, P .. 'pendx:' .. pid)
  redis.call('ZREM', P .. 'grace', pid)
end

-- ------------------------------------------------------------------ rooms

local function load_room(id)
  if id == nil or id == '' then return nil end
  local s = redis.call('GET', P .. 'room:' .. id)
  if not s then return nil end
  local r = cjson.decode(s)
  -- cjson turns empty JSON arrays and objects alike into empty tables.
  r.pl = r.pl or {}; r.kk = r.kk or {}; r.ap = r.ap or {}; r.ar = r.ar or {}
  r.chat = r.chat or {}; r.bk = r.bk or {}; r.sp = r.sp or {}; r.tx = r.tx or {}
  return r
end

local function seat_index(r, pid)
  for i, s in ipairs(r.pl) do
    if s.id == pid then return i end
  end
  return nil
end

-- Spectators (1.1) watch without a seat: r.sp, in join order.
local function spectator_index(r, pid)
  for i, s in ipairs(r.sp) do
    if s.id == pid then return i end
  end
  return nil
end

-- Everyone who hears the room's events: the seats, then the spectators.
local function members(r, except)
  local out = {}
  for _, s in ipairs(r.pl) do
    if s.id ~= except then out[#out + 1] = s.id end
  end
  for _, s in ipairs(r.sp) do
    if s.id ~= except then out[#out + 1] = s.id end
  end
  return out
end

local function footprint(r)
  if r == nil or #r.pl == 0 then return nil end
  local held = 0
  for _, s in ipairs(r.pl) do
    if not s.c then held = held + 1 end
  end
  local restricted = #r.ap > 0 or #r.ar > 0
  -- The index a room is in: mm (waiting) or bf (active, backfill), or none.
  local matchable = false
  if (not r.priv) and #r.pl < r.max and not restricted then
    if r.st == 'waiting' then matchable = 'mm'
    elseif r.st == 'active' and r.bf then matchable = 'bf' end
  end
  return {
    st = r.st, seats = #r.pl, held = held, seq = r.seq, mode = r.mode, id = r.id,
    matchable = matchable,
    listed = (not r.priv) and r.st ~= 'finished',
    bk = table.concat(r.bk, '\n'), bkl = r.bk,
  }
end

local function same(a, b)
  if a == nil or b == nil then return a == b end
  return a.st == b.st and a.seats == b.seats and a.held == b.held
    and a.matchable == b.matchable and a.listed == b.listed and a.bk == b.bk
end

local function apply(f, sign)
  if f == nil then return end
  local S = P .. 'stats'
  redis.call('HINCRBY', S, f.st, sign)
  redis.call('HINCRBY', S, 'seats', sign * f.seats)
  if f.held ~= 0 then redis.call('HINCRBY', S, 'held', sign * f.held) end
  if f.st == 'waiting' then redis.call('HINCRBY', S, 'seats_waiting', sign * f.seats) end
  if f.matchable then
    local prefix = P .. f.matchable .. ':'
    for _, k in ipairs(f.bkl) do
      if sign > 0 then redis.call('ZADD', prefix .. k, f.seq, f.id)
      else redis.call('ZREM', prefix .. k, f.id) end
    end
  end
  if f.listed then
    local l = (f.st == 'waiting') and 'w' or 'a'
    if sign > 0 then
      redis.call('ZADD', P .. 'list:' .. l, f.seq, f.id)
      redis.call('ZADD', P .. 'list:' .. l .. ':' .. f.mode, f.seq, f.id)
    else
      redis.call('ZREM', P .. 'list:' .. l, f.id)
      redis.call('ZREM', P .. 'list:' .. l .. ':' .. f.mode, f.id)
    end
  end
end

-- What a room object shows (no code, no node): `room_updated` goes out
-- only when this changed, as in the in-memory engine.
local VIEW0 = {}
local function view(r)
  local parts = { r.st, r.mode, tostring(r.max), r.data }
  for _, s in ipairs(r.pl) do
    parts[#parts + 1] = table.concat({ s.id, s.nm, s.dt, s.ja, tostring(s.c), tostring(s.rd) }, '\31')
  end
  parts[#parts + 1] = '\29'
  for _, s in ipairs(r.sp) do
    parts[#parts + 1] = table.concat({ s.id, s.nm, s.ja, tostring(s.c) }, '\31')
  end
  return table.concat(parts, '\30')
end

-- The room as the live room list shows it: public, waiting, not empty.
local function viewable(r)
  return r ~= nil and #r.pl > 0 and (not r.priv) and r.st == 'waiting'
end

-- ----------------------------------------------------------------- events

-- Events of the current change, as specs the nodes render: {k = kind,
-- to = {players}, ...}. `flush` sends them with the room snapshot.
local EV = {}
local REPLY = nil

-- Queues an event for `to` (none: nothing), into the change's events or
-- into `into` (LATER).
local function emit(to, spec, into)
  if #to == 0 then return end
  spec.to = to
  local list = into or EV
  list[#list + 1] = spec
end

-- Room-list changes go out after the change's reply and events (as the
-- in-memory engine delivers them), when the operation is done.
local LISTING = {}
local function publish_listing(change, r, mode, id)
  if redis.call('SCARD', P .. 'listwatch') == 0 then return end
  local msg = { k = change, mode = mode, id = id }
  if r ~= nil then msg.room = r end
  LISTING[#LISTING + 1] = cjson.encode(msg)
end

local function push_pending(pid, text, limit)
  local key = P .. 'pend:' .. pid
  local n = redis.call('RPUSH', key, text)
  if n > limit then
    redis.call('LTRIM', key, n - limit, -1)
    redis.call('INCRBY', P .. 'pendx:' .. pid, n - limit)
  end
end

-- Events kept per held seat (`--resume-buffer`, written by each beat).
local LIMIT = nil
local function pending_limit()
  if LIMIT == nil then
    LIMIT = tonumber(redis.call('HGET', P .. 'cfg', 'pending') or '256')
  end
  return LIMIT
end

-- Webhooks: the event types to record (cfg 'hooks', space separated, written
-- by each beat; empty: off) and the stream's bound (cfg 'hookcap'). An
-- event is an entry of the stream rv:hooks, appended in the same call as
-- the change it tells of; one node at a time delivers them (src/backend/
-- cluster/hooks.rs). Room snapshots travel as the stored room record.
local HOOKS = nil
local function hook_cfg()
  if HOOKS == nil then
    local v = redis.call('HMGET', P .. 'cfg', 'hooks', 'hookcap', 'alloc')
    HOOKS = { list = ' ' .. (v[1] or '') .. ' ', cap = tonumber(v[2] or '10000'), alloc = v[3] == '1' }
  end
  return HOOKS
end

local function hook(kind, fields)
  local cfg = hook_cfg()
  if not string.find(cfg.list, ' ' .. kind .. ' ', 1, true) then return end
  if redis.call('XLEN', P .. 'hooks') >= cfg.cap then
    redis.call('INCR', P .. 'hooks:dropped')
    return
  end
  local args = { 'XADD', P .. 'hooks', '*', 't', kind, 'at', tostring(now()) }
  for k, v in pairs(fields) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  redis.call(unpack(args))
end

-- The allocation hook (cfg 'alloc' = '1'): a room that starts holds its
-- game_start; the calling node asks the allocator, then `announce`s it.
local STARTED = {}

-- Events of changes made where the operation's events are already out (a
-- forgotten player leaving its party): published after everything else
-- the operation did, as the in-memory engine delivers its `later` list.
local LATER = {}
local function alloc_on()
  return hook_cfg().alloc
end

-- Sends the accumulated events (and the reply, if any) with a snapshot of
-- the room: once to every node with a connected recipient, into the
-- pending list of every recipient whose seat is held.
local function flush(r)
  if #EV == 0 and REPLY == nil then return end
  local nodes = {}
  local held = {}
  local looked = {}
  for _, spec in ipairs(EV) do
    for _, pid in ipairs(spec.to) do
      if not looked[pid] then
        looked[pid] = true
        local v = redis.call('HMGET', P .. 'pl:' .. pid, 'node', 'conn')
        if v[2] == '1' and v[1] then
          nodes[v[1]] = true
        elseif v[1] then
          held[#held + 1] = pid
        end
      end
    end
  end
  local notice = { t = 'change', ev = EV }
  if r ~= nil then notice.room = r end
  if REPLY ~= nil then
    notice.reply = REPLY
    nodes[ME] = true
  end
  local text = cjson.encode(notice)
  for node, _ in pairs(nodes) do
    redis.call('PUBLISH', P .. 'ch:' .. node, text)
  end
  if #held > 0 then
    local quiet = cjson.encode({ t = 'change', ev = EV, room = r })
    for _, pid in ipairs(held) do push_pending(pid, quiet, pending_limit()) end
  end
  EV = {}
  REPLY = nil
end

-- Saves a changed room (or drops an empty one) and moves the derived data.
-- `f0`/`v0` are the footprint and list visibility from before the change;
-- `quiet` changes (chat, a takeover) do not update the room list.
local function commit(r, f0, v0, quiet)
  local empty = #r.pl == 0
  r.act = now()
  local f1 = footprint(r)
  if not same(f0, f1) then
    apply(f0, -1)
    apply(f1, 1)
  end
  local v1 = viewable(r)
  if v0 and not v1 then
    publish_listing('delisted', nil, r.mode, r.id)
  elseif v1 and not v0 then
    publish_listing('listed', r, r.mode, r.id)
  elseif v1 and not quiet and VIEW0[r.id] ~= view(r) then
    publish_listing('updated', r, r.mode, r.id)
  end
  if empty then
    -- Spectators of a room that closed are out of it (told by the caller).
    for _, sp in ipairs(r.sp) do
      local q = player(sp.id)
      if q then
        redis.call('HSET', P .. 'pl:' .. sp.id, 'room', '', 'sp', '0')
        if not q.conn then forget(sp.id) end
      end
    end
    hook('room.closed', { rid = r.id })
    redis.call('DEL', P .. 'room:' .. r.id, P .. 'code:' .. r.code)
    redis.call('ZREM', P .. 'timer', 'i:' .. r.id, 'f:' .. r.id)
  else
    redis.call('SET', P .. 'room:' .. r.id, cjson.encode(r))
  end
end

-- Opens a change of room `r`: returns its footprint and list visibility,
-- and notes what the room list shows of it.
local function open(r)
  VIEW0[r.id] = view(r)
  return footprint(r), viewable(r)
end

-- ------------------------------------------------------------- operations

-- A closing room tells its spectators: spectator_left (closed) for each of
-- them, to all of them (`commit` of the emptied room releases them).
local function dismiss_spectators(r)
  local watching = {}
  for _, s in ipairs(r.sp) do watching[#watching + 1] = s.id end
  for _, pid in ipairs(watching) do
    emit(watching, { k = 'spectator_left', p = pid, reason = 'closed' })
  end
end

-- The player gives up its seat (left, kicked, timeout, closed); the others
-- learn it, and of a new host when the host went.
local function leave_with(pid, reason)
  local p = player(pid)
  if not p or p.room == '' then return false end
  local r = load_room(p.room)
  redis.call('HSET', P .. 'pl:' .. pid, 'room', '', 'sp', '0')
  if not p.conn then forget(pid) end
  if not r then return true end
  local f0, v0 = open(r)
  local j = spectator_index(r, pid)
  if j then
    table.remove(r.sp, j)
    emit(members(r), { k = 'spectator_left', p = pid, reason = reason })
    commit(r, f0, v0)
    flush(r)
    return true
  end
  local i = seat_index(r, pid)
  if not i then return true end
  hook('player.left', { rid = r.id, p = pid, reason = reason })
  table.remove(r.pl, i)
  local rest = members(r)
  emit(rest, { k = 'player_left', p = pid, reason = reason })
  if #r.pl == 0 then
    dismiss_spectators(r)
  elseif i == 1 then
    emit(rest, { k = 'host_changed', p = r.pl[1].id })
  end
  -- 1.2: the rest may all be ready now.
  if #r.pl > 0 then start_if_ready(r) end
  commit(r, f0, v0)
  flush(r)
  -- A backfill seat opened: queued tickets take it at once.
  if #r.pl > 0 and r.bf and r.st == 'active'
    and tonumber(redis.call('HGET', P .. 'stats', 'tickets_queued') or '0') > 0 then
    offer_seats(r.id)
  end
  return true
end

-- Waiting to active, with room_status and game_start to every member.
local function start(r)
  r.st = 'active'
  -- Only a waiting room has an idle deadline.
  redis.call('ZREM', P .. 'timer', 'i:' .. r.id)
  local all = members(r)
  emit(all, { k = 'room_status', status = 'active' })
  if alloc_on() then
    STARTED[#STARTED + 1] = r.id
  else
    emit(all, { k = 'game_start' })
  end
  redis.call('HINCRBY', P .. 'stats', 'matches_started', 1)
  hook('match.started', { room = cjson.encode(r) })
end

-- 1.2: a start_when_ready room starts once every seated player is ready
-- (at least 2 seated; a full room has at least 2).
start_if_ready = function(r)
  if not r.swr or r.st ~= 'waiting' or #r.pl < 2 then return end
  for _, s in ipairs(r.pl) do
    if not s.rd then return end
  end
  start(r)
end

-- Seats a player whose eligibility was checked.
local function seat(r, p)
  local others = members(r)
  local node = ME
  if p.node ~= '' then node = p.node end
  -- A party member seated by its leader may be away: its seat is held.
  r.pl[#r.pl + 1] = { id = p.id, nm = p.name, dt = '{}', ja = stamp(), c = p.conn, n = node, rd = false }
  emit(others, { k = 'player_joined', p = p.id })
  emit({ p.id }, { k = 'chat_history' })
  redis.call('HSET', P .. 'pl:' .. p.id, 'room', r.id)
  if #r.pl == 1 then hook('room.created', { room = cjson.encode(r) }) end
  hook('player.joined', { room = cjson.encode(r), p = p.id })
  -- A backfill room refilled while active is already started.
  if #r.pl >= r.max and r.st == 'waiting' then start(r) end
end

-- The matchmaking buckets of a room: (mode, size) first, then one per
-- scalar data entry; `attrs` are the entries' "\31key\31json" suffixes,
-- made by the caller so their text is serde's, not cjson's.
local function buckets(mode, max, attrs)
  local base = mode .. '\31' .. max
  local out = { base }
  for _, a in ipairs(attrs) do out[#out + 1] = base .. a end
  return out
end

local function free_player(pid)
  local p = player(pid)
  if not p then return nil, fail('internal', 'unknown player; reconnect') end
  if p.room ~= '' then
    return nil, fail('already_in_room', 'you are already in a room; leave it first')
  end
  if p.tk ~= '' then
    return nil, fail('already_queued', 'you have a ticket in the queue; cancel_match first')
  end
  return p, nil
end

-- Takes the first free code among the candidates for `id` (key prefix
-- `code:` for rooms, `ptc:` for parties); nil when all are taken.
local function claim_code(prefix, codes, id)
  for _, c in ipairs(codes) do
    if redis.call('SET', P .. prefix .. c, id, 'NX') then return c end
  end
  return nil
end

-- The players of `list` but `who`, in order.
local function without(list, who)
  local out = {}
  for _, x in ipairs(list) do
    if x ~= who then out[#out + 1] = x end
  end
  return out
end

-- A new room with the first free code among the candidates.
local function new_room(id, codes, priv, mode, max, data, ap, ar, bk, max_rooms, idle_ms, bf, msp, swr)
  local s = redis.call('HMGET', P .. 'stats', 'waiting', 'active', 'finished')
  local total = tonumber(s[1] or '0') + tonumber(s[2] or '0') + tonumber(s[3] or '0')
  if total >= max_rooms then
    return nil, fail('limit_reached', 'the server holds its maximum of ' .. max_rooms .. ' rooms')
  end
  local code = claim_code('code:', codes, id)
  if not code then return nil, fail('internal', 'no free join code; try again') end
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('ZADD', P .. 'timer', now() + idle_ms, 'i:' .. id)
  return {
    id = id, code = code, priv = priv, mode = mode, max = max, st = 'waiting',
    ca = A.now, seq = seq, data = data, pl = {}, kk = {}, ap = ap, ar = ar,
    chat = {}, bk = bk, act = now(), bf = bf and true or false, sp = {}, msp = msp or 0,
    swr = swr and true or false,
  }, nil
end

local function my_room(pid, as_host)
  local p = player(pid)
  if not p or p.room == '' then return nil, nil, fail('not_in_room', 'you are not in a room') end
  local r = load_room(p.room)
  if not r then return nil, nil, fail('not_in_room', 'you are not in a room') end
  if as_host and (r.pl[1] == nil or r.pl[1].id ~= pid) then
    return nil, nil, fail('not_host', 'only the host can do that')
  end
  return p, r, nil
end

local function ok(v)
  if v == nil then v = true end
  if #STARTED > 0 then return cjson.encode({ ok = v, s = STARTED }) end
  return cjson.encode({ ok = v })
end

-- Closes a room: every member gets player_left (closed) for every player.
local function close_room(r)
  local f0, v0 = open(r)
  local all = members(r)
  local seated = {}
  for _, s in ipairs(r.pl) do seated[#seated + 1] = s.id end
  for _, pid in ipairs(seated) do
    emit(all, { k = 'player_left', p = pid, reason = 'closed' })
    hook('player.left', { rid = r.id, p = pid, reason = 'closed' })
  end
  dismiss_spectators(r)
  flush(r)
  for _, pid in ipairs(seated) do
    local p = player(pid)
    if p then
      redis.call('HSET', P .. 'pl:' .. pid, 'room', '')
      if not p.conn then forget(pid) end
    end
  end
  r.pl = {}
  commit(r, f0, v0)
end

-- ----------------------------------------------------------------- parties
-- A party (1.1): pty:<id> holds its members in join order (the first
-- leads) and its size; ptc:<CODE> finds it by code; a player's hash names
-- its party (pt). The same rules as src/lobby/party.rs.

local function load_party(id)
  if id == nil or id == '' then return nil end
  local s = redis.call('GET', P .. 'pty:' .. id)
  if not s then return nil end
  local pt = cjson.decode(s)
  pt.m = pt.m or {}
  return pt
end

local function save_party(pt)
  redis.call('SET', P .. 'pty:' .. pt.id, cjson.encode(pt))
end

-- The party as the wire shows it (names and connections of now).
local function party_view(pt)
  local members = {}
  for i, pid in ipairs(pt.m) do
    local p = player(pid)
    members[i] = { id = pid, nm = p and p.name or '', c = p ~= nil and p.conn }
  end
  return { id = pt.id, code = pt.code, max = pt.max, m = members }
end

-- party_updated to every member but `except`, into `into` (EV by default).
party_changed = function(id, except, into)
  local pt = load_party(id)
  if not pt then return end
  local to = without(pt.m, except)
  if #to == 0 then return end
  emit(to, { k = 'party_updated', pt = party_view(pt) }, into)
end

-- The party's ticket (its leader's: a leader only ever queues the whole
-- party) leaves the queue, the membership being about to change: its
-- players but `by` are told.
local function cancel_party_ticket(pt, by, into)
  local p = player(pt.m[1])
  local t = p and load_ticket(p.tk)
  if not t then return end
  drop_ticket(t)
  emit(without(t.pl, by), { k = 'ticket_cancelled', tid = t.id }, into)
end

-- Takes the player out of its party (leave, or forgotten: `later`, its
-- events go out after the operation's).
drop_from_party = function(pid, later)
  local p = player(pid)
  if not p or p.pt == '' then return end
  local into = later and LATER or EV
  local pt = load_party(p.pt)
  redis.call('HDEL', P .. 'pl:' .. pid, 'pt')
  if not pt then return end
  cancel_party_ticket(pt, pid, into)
  pt.m = without(pt.m, pid)
  if #pt.m == 0 then
    redis.call('DEL', P .. 'pty:' .. pt.id, P .. 'ptc:' .. pt.code)
    redis.call('HINCRBY', P .. 'stats', 'parties', -1)
    return
  end
  save_party(pt)
  party_changed(pt.id, nil, into)
end

-- The players a request of `p` moves together: the party's members when
-- it leads a party of several, itself alone otherwise.
local function group_of(p)
  local pt = load_party(p.pt)
  if pt == nil or #pt.m < 2 then return { p.id }, nil end
  if pt.m[1] ~= p.id then
    return nil, fail('not_party_leader', 'only the party\'s leader can do that for the party')
  end
  return pt.m, nil
end

-- The other members a leader moves along must be free.
local function members_free(group)
  for i = 2, #group do
    local m = player(group[i])
    if m and m.room ~= '' then
      return fail('already_in_room', 'party member ' .. group[i] .. ' is in a room')
    end
    if m and m.tk ~= '' then
      return fail('already_queued', 'party member ' .. group[i] .. ' has a ticket in the queue')
    end
  end
  return nil
end

local function group_fits(n, max)
  if n > max then
    return fail('bad_request', 'the party has ' .. n .. ' members, more than max_players (' .. max .. ')')
  end
  return nil
end

-- A held seat / connection: conn off, grace timer on, the others told.
local function hold(pid, grace_ms)
  local p = player(pid)
  if not p then return end
  if p.conn then
    count_conn(p.node, -1)
    -- A queued ticket is not matched while its player is away.
    if p.tk ~= '' then redis.call('HINCRBY', P .. 'tk:' .. p.tk, 'away', 1) end
  end
  redis.call('HSET', P .. 'pl:' .. pid, 'conn', '0', 'seen', now())
  if p.node ~= '' then redis.call('SREM', P .. 'nodepl:' .. p.node, pid) end
  redis.call('ZADD', P .. 'grace', now() + grace_ms, pid)
  if p.conn and p.pt ~= '' then party_changed(p.pt, pid) end
  local r = load_room(p.room)
  if not r then
    flush(nil)
    return
  end
  local j = spectator_index(r, pid)
  if j then
    -- A spectator's drop is silent; its place is held the same.
    local f0, v0 = open(r)
    r.sp[j].c = false
    commit(r, f0, v0)
    flush(r)
    return
  end
  local i = seat_index(r, pid)
  if not i then return end
  local f0, v0 = open(r)
  r.pl[i].c = false
  emit(members(r, pid), { k = 'player_disconnected', p = pid })
  commit(r, f0, v0)
  flush(r)
end

-- ------------------------------------------------------------ operations
-- One function per operation, taking the decoded arguments `a`.

local OPS = {}

-- Defined with the tickets below; hello uses it for a player coming back.
local look_at

-- Registers a connection: a fresh, resumed or JWT identity.
-- a: conn, fresh, name, resume ('' none), sub ('' none), token
function OPS.hello(a)
  local pid, resumed = a.fresh, false
  local name = a.name
  local back = nil
  if a.sub ~= '' then
    pid = a.sub
    resumed = redis.call('EXISTS', P .. 'pl:' .. pid) == 1
  elseif a.resume ~= '' then
    local owner = redis.call('GET', P .. 'tok:' .. a.resume)
    if owner and redis.call('EXISTS', P .. 'pl:' .. owner) == 1 then
      pid = owner
      resumed = true
    end
  end
  local p = player(pid)
  if p then
    if p.tok ~= '' then redis.call('DEL', P .. 'tok:' .. p.tok) end
    if p.conn then
      -- One identity, one connection: the older socket goes (its node is
      -- told; on this node the registration replaces it).
      count_conn(p.node, -1)
      if p.node ~= '' and p.node ~= ME then
        redis.call('PUBLISH', P .. 'ch:' .. p.node, cjson.encode({ t = 'replaced', p = pid }))
      end
    end
    if p.node ~= '' and p.node ~= ME then redis.call('SREM', P .. 'nodepl:' .. p.node, pid) end
    if not p.conn and p.tk ~= '' and redis.call('EXISTS', P .. 'tk:' .. p.tk) == 1 then
      -- Back: the ticket may be matched again (looked at once the welcome
      -- is out, and on the next pass).
      if redis.call('HINCRBY', P .. 'tk:' .. p.tk, 'away', -1) <= 0 then
        redis.call('SADD', P .. 'tqwoken', p.tk)
        back = p.tk
      end
    end
    name = p.name
  end
  local epoch = redis.call('HINCRBY', P .. 'pl:' .. pid, 'epoch', 1)
  redis.call('HSET', P .. 'pl:' .. pid, 'name', name, 'node', ME, 'conn', '1', 'seen', now(), 'tok', a.token)
  if not p then redis.call('HSET', P .. 'pl:' .. pid, 'room', '') end
  redis.call('SET', P .. 'tok:' .. a.token, pid)
  redis.call('SADD', P .. 'nodepl:' .. ME, pid)
  count_conn(ME, 1)
  -- Back (not a takeover): the party sees the member connected again.
  if p and not p.conn and p.pt ~= '' then party_changed(p.pt, pid) end
  redis.call('ZREM', P .. 'grace', pid)
  local pending = redis.call('LRANGE', P .. 'pend:' .. pid, 0, -1)
  local dropped = tonumber(redis.call('GET', P .. 'pendx:' .. pid) or '0')
  redis.call('DEL', P .. 'pend:' .. pid, P .. 'pendx:' .. pid)
  local r = nil
  if p and p.room ~= '' then
    r = load_room(p.room)
    -- The seat (or spectator's place) comes back to this connection; a
    -- spectator's return is silent.
    local i = r and seat_index(r, pid)
    local j = r and not i and spectator_index(r, pid)
    local place = (i and r.pl[i]) or (j and r.sp[j])
    if place then
      local f0, v0 = open(r)
      local was = place.c
      local moved = was and place.n ~= ME
      place.c = true
      place.n = ME
      if i and not was then
        emit(members(r, pid), { k = 'player_reconnected', p = pid })
      elseif moved then
        -- No event for the players (the seat never went), but their nodes
        -- route signals by the room's snapshot: tell them it moved.
        emit(members(r, pid), { k = 'moved', p = pid })
      end
      commit(r, f0, v0, was)
    end
  end
  -- The welcome goes through this node's channel too, so it comes before
  -- any event published after this script.
  local party = nil
  if p and p.pt ~= '' then
    local pt = load_party(p.pt)
    if pt then party = party_view(pt) end
  end
  redis.call('PUBLISH', P .. 'ch:' .. ME, cjson.encode({
    t = 'hello', conn = a.conn, p = pid, name = name, resumed = resumed, tok = a.token,
    epoch = epoch, pending = pending, dropped = dropped, room = r, party = party,
  }))
  flush(r)
  if back then look_at({ back }, a.rooms, a) end
  return ok({ p = pid, epoch = epoch })
end

-- The connection of `a.p` (registration `a.epoch`) closed: its seat is held
-- for `a.grace_ms`, unless a newer connection took over meanwhile.
function OPS.bye(a)
  local p = player(a.p)
  if not p then return ok(false) end
  local held = p.epoch == a.epoch and p.node == ME and p.conn
  if held then hold(a.p, a.grace_ms) end
  -- Behind every notice this node got while the player was still marked
  -- connected here: the node hands what it caught for the player over
  -- (`keep`), also when the player came back meanwhile.
  redis.call('PUBLISH', P .. 'ch:' .. ME, cjson.encode({ t = 'gone', p = a.p }))
  return ok(held)
end

-- Events a node caught for a player between its connection's end and
-- `bye` (a.events, texts). For a held seat they go before the pending
-- list; a player that is back already (a resume or takeover that beat
-- `bye`) gets them on its node now, rather than never.
function OPS.keep(a)
  local p = player(a.p)
  if not p then return ok(false) end
  local specs = {}
  for i, x in ipairs(a.events) do specs[i] = { k = 'raw', to = { a.p }, x = x } end
  if p.conn then
    redis.call('PUBLISH', P .. 'ch:' .. p.node, cjson.encode({ t = 'change', ev = specs }))
    return ok(true)
  end
  local key = P .. 'pend:' .. a.p
  for i = #specs, 1, -1 do
    redis.call('LPUSH', key, cjson.encode({ t = 'change', ev = { specs[i] } }))
  end
  local n = redis.call('LLEN', key)
  if n > pending_limit() then
    redis.call('LTRIM', key, n - pending_limit(), -1)
    redis.call('INCRBY', P .. 'pendx:' .. a.p, n - pending_limit())
  end
  return ok(true)
end

-- a: p, room_id, codes, private, mode, max, data (raw), allowed_players,
-- allowed_roles, attrs, max_rooms, idle_ms, rid (raw), now
function OPS.create_room(a)
  local p, e = free_player(a.p)
  if e then return e end
  local r
  r, e = new_room(a.room_id, a.codes, a.private, a.mode, a.max, a.data, a.allowed_players,
    a.allowed_roles, buckets(a.mode, a.max, a.attrs), a.max_rooms, a.idle_ms, a.backfill,
    a.max_spectators, a.start_when_ready)
  if e then return e end
  seat(r, p)
  commit(r, nil, false)
  REPLY = { p = p.id, rid = a.rid, kind = 'room' }
  flush(r)
  return ok()
end

-- a: p, room_id ('' when by code), code, roles, spectator, rid (raw), now
function OPS.join_room(a)
  local p, e = free_player(a.p)
  if e then return e end
  local id = a.room_id
  if id == '' then
    id = redis.call('GET', P .. 'code:' .. a.code) or ''
  end
  local r = load_room(id)
  if not r then
    if a.room_id ~= '' then return fail('room_not_found', 'no room ' .. q(a.room_id)) end
    return fail('room_not_found', 'no room with code ' .. q(a.code_given))
  end
  local admits = not r.kk[p.id]
  if admits and (#r.ap > 0 or #r.ar > 0) then
    admits = false
    for _, x in ipairs(r.ap) do if x == p.id then admits = true end end
    for _, role in ipairs(a.roles) do
      for _, x in ipairs(r.ar) do if x == role then admits = true end end
    end
  end
  if not admits then
    if r.kk[p.id] then return fail('forbidden', 'you were kicked from this room') end
    return fail('forbidden', 'this room is restricted to other players')
  end
  if a.spectator then
    local msp = r.msp or 0
    if #r.sp >= msp then
      return fail('room_full', 'room ' .. r.id .. ' has ' .. #r.sp .. ' of ' .. msp .. ' spectators')
    end
    local f0, v0 = open(r)
    emit(members(r), { k = 'spectator_joined', p = p.id })
    r.sp[#r.sp + 1] = { id = p.id, nm = p.name, dt = '{}', ja = stamp(), c = true, n = ME }
    emit({ p.id }, { k = 'chat_history' })
    redis.call('HSET', P .. 'pl:' .. p.id, 'room', r.id, 'sp', '1')
    commit(r, f0, v0)
    REPLY = { p = p.id, rid = a.rid, kind = 'room' }
    flush(r)
    return ok()
  end
  if #r.pl >= r.max then
    return fail('room_full', 'room ' .. r.id .. ' has ' .. #r.pl .. ' of ' .. r.max .. ' players')
  end
  if r.st ~= 'waiting' then return fail('room_not_waiting', 'room ' .. r.id .. ' is ' .. r.st) end
  local f0, v0 = open(r)
  seat(r, p)
  commit(r, f0, v0)
  REPLY = { p = p.id, rid = a.rid, kind = 'room' }
  flush(r)
  return ok()
end

-- The oldest room of index `prefix` (mm: waiting, bf: active backfill)
-- that is in every bucket of `bks` and `fits`.
local function find_in(prefix, bks, fits)
  -- Walk the smallest bucket; a matching room is in all of them.
  local best, best_n = nil, nil
  for _, b in ipairs(bks) do
    local n = redis.call('ZCARD', P .. prefix .. b)
    if best_n == nil or n < best_n then best, best_n = b, n end
  end
  local from, batch = 0, 1
  while best_n > 0 and from < best_n do
    -- Usually the first room fits: read one, then wider batches.
    local ids = redis.call('ZRANGE', P .. prefix .. best, from, from + batch - 1)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      local all = true
      for _, b in ipairs(bks) do
        if b ~= best and not redis.call('ZSCORE', P .. prefix .. b, id) then
          all = false
          break
        end
      end
      if all then
        local r = load_room(id)
        if r and fits(r) then return r end
      end
    end
    from = from + batch
    batch = math.min(batch * 8, 512)
  end
  return nil
end

-- a: p, attrs (one per filter), data (raw filters: the new room's data),
-- room_id (of a new room), codes, max_rooms, idle_ms, mode, max, backfill,
-- rid, now. Active games missing a player first, then waiting rooms.
function OPS.find_match(a)
  local p, e = free_player(a.p)
  if e then return e end
  local group
  group, e = group_of(p)
  if e then return e end
  e = members_free(group) or group_fits(#group, a.max)
  if e then return e end
  local bks = buckets(a.mode, a.max, a.attrs)
  -- A party needs a seat for each member, and none of them kicked.
  local function admits(status)
    return function(r)
      if r.st ~= status or #r.pl + #group > r.max then return false end
      for _, pid in ipairs(group) do
        if r.kk[pid] then return false end
      end
      return true
    end
  end
  local found = find_in('bf:', bks, admits('active')) or find_in('mm:', bks, admits('waiting'))
  local created = false
  local f0, v0 = nil, false
  local r = found
  if r then
    f0, v0 = open(r)
  else
    r, e = new_room(a.room_id, a.codes, false, a.mode, a.max, a.data, {}, {}, bks,
      a.max_rooms, a.idle_ms, a.backfill, a.max_spectators, a.start_when_ready)
    if e then return e end
    created = true
  end
  seat(r, p)
  for i = 2, #group do
    local m = player(group[i])
    if m then seat(r, m) end
  end
  emit(without(group, p.id), { k = 'room_joined' })
  commit(r, f0, v0)
  REPLY = { p = p.id, rid = a.rid, kind = 'match', created = created }
  flush(r)
  return ok()
end

-- ----------------------------------------------------------------- tickets
-- queue_match (1.1): the same rule as the in-memory engine
-- (src/lobby/tickets.rs and queue.rs), on the keys described at "ticket
-- storage". A ticket is looked at (as the anchor of a group) when it
-- arrives, when its player comes back, when it passes the fill delay and
-- when its widening window reaches a ticket it did not reach before.

local CAP = 256

local function window(t, now_ms)
  local waited = math.max(now_ms - t.q, 0) / 1000
  return math.min(t.w0 + t.wr * waited, t.wm)
end

-- Region -> RTT of the regions within the ticket's limit; nil when it gave
-- none (it accepts any).
local function acceptable(t)
  if #t.rg == 0 then return nil end
  local out = {}
  for _, pair in ipairs(t.rg) do
    if pair[2] <= t.mrt then out[pair[1]] = pair[2] end
  end
  return out
end

local function by_seq(x, y) return x.seq < y.seq end

local function try_add(g, c, now_ms, max)
  if g.size + #c.pl > max then return end
  local s = c.skill or 0
  local lo, hi = math.min(g.lo, s), math.max(g.hi, s)
  local w = math.min(g.w, window(c, now_ms))
  if hi - lo > w then return end
  local theirs = acceptable(c)
  local rg
  if g.rg == nil then
    rg = theirs
  elseif theirs == nil then
    rg = g.rg
  else
    rg = {}
    for r, worst in pairs(g.rg) do
      if theirs[r] ~= nil then rg[r] = math.max(worst, theirs[r]) end
    end
  end
  if rg ~= nil and next(rg) == nil then return end
  g.m[#g.m + 1] = c
  g.size = g.size + #c.pl
  g.lo, g.hi, g.w, g.rg = lo, hi, w, rg
end

-- The group ticket `a` anchors now, if it may form: its tickets in queue
-- order and the region (lowest worst RTT).
local function group_for(a, now_ms, fill_ms)
  if a.away > 0 then return nil end
  local max = a.max
  local w = window(a, now_ms)
  local cands = {}
  if a.skill ~= nil then
    -- The window's tickets nearest the anchor's skill first.
    local key = P .. 'tqs:' .. a.pool
    local below = redis.call('ZREVRANGEBYSCORE', key, '(' .. num(a.skill), num(a.skill - w),
      'WITHSCORES', 'LIMIT', 0, CAP)
    local above = redis.call('ZRANGEBYSCORE', key, num(a.skill), num(a.skill + w),
      'WITHSCORES', 'LIMIT', 0, CAP)
    local i, j, n = 1, 1, 0
    while n < CAP do
      local b, u = below[i], above[j]
      if b == nil and u == nil then break end
      local take_below = u == nil
      if b ~= nil and u ~= nil then
        take_below = (a.skill - tonumber(below[i + 1])) < (tonumber(above[j + 1]) - a.skill)
      end
      local m
      if take_below then m, i = b, i + 2 else m, j = u, j + 2 end
      local t = load_ticket(string.sub(m, 18))
      if t then cands[#cands + 1] = t end
      n = n + 1
    end
    table.sort(cands, by_seq)
  else
    for _, id in ipairs(redis.call('ZRANGE', P .. 'tqa:' .. a.pool, 0, CAP - 1)) do
      local t = load_ticket(id)
      if t then cands[#cands + 1] = t end
    end
  end
  local s = a.skill or 0
  local g = { m = { a }, size = #a.pl, lo = s, hi = s, w = w, rg = acceptable(a) }
  for _, c in ipairs(cands) do
    if g.size == max then break end
    if c.id ~= a.id and c.away == 0 then try_add(g, c, now_ms, max) end
  end
  if g.rg ~= nil and next(g.rg) == nil then return nil end
  table.sort(g.m, by_seq)
  local min = 0
  for _, t in ipairs(g.m) do if t.min > min then min = t.min end end
  local full = g.size == max
  local filled = g.size >= math.max(min, 2) and now_ms - g.m[1].q >= fill_ms
  if not (full or filled) then return nil end
  local region, best = nil, nil
  if g.rg ~= nil then
    for r, worst in pairs(g.rg) do
      if best == nil or worst < best or (worst == best and r < region) then
        region, best = r, worst
      end
    end
  end
  return g.m, region
end

-- Whether an active backfill room can take the ticket now (free seats for
-- all its players, none kicked, its data.skill within the ticket's window
-- and its data.region within its RTT limit, when the room has them).
local function room_fits(r, t, now_ms)
  if r.st ~= 'active' or not r.bf or r.priv or #r.ap > 0 or #r.ar > 0 then return false end
  if #r.pl + #t.pl > r.max then return false end
  for _, pid in ipairs(t.pl) do
    if r.kk[pid] then return false end
  end
  local d = cjson.decode(r.data)
  if type(d.skill) == 'number' then
    if t.skill == nil or math.abs(t.skill - d.skill) > window(t, now_ms) then return false end
  end
  if type(d.region) == 'string' then
    local ok = acceptable(t)
    if ok ~= nil and ok[d.region] == nil then return false end
  end
  return true
end

-- Whether the room's data has every filter of the ticket (its buckets).
local function has_filters(r, t)
  local mine = {}
  for _, b in ipairs(r.bk) do mine[b] = true end
  local base = r.mode .. '\31' .. r.max
  for _, at in ipairs(t.at) do
    if not mine[base .. at] then return false end
  end
  return true
end

-- Seats a ticket's players in an active backfill room: player_joined to
-- the members, then game_start with the ticket to its players.
local function seat_ticket(r, t, queued)
  if queued then drop_ticket(t) end
  local f0, v0 = open(r)
  for _, pid in ipairs(t.pl) do
    local p = player(pid)
    if p then seat(r, p) end
  end
  r.tx[#r.tx + 1] = { t = t.id, p = t.pl }
  emit(t.pl, { k = 'game_start', tid = t.id })
  commit(r, f0, v0)
  flush(r)
end

local function backfill_room(t, now_ms)
  return find_in('bf:', buckets(t.mode, t.max, t.at), function(r) return room_fits(r, t, now_ms) end)
end

-- The room of a formed group: created active with every player seated in
-- ticket order, game_start with each ticket's id to its players. False
-- (nothing changed) at the room limit.
local function form_room(members_, region, nr, a)
  local first = members_[1]
  local data, attrs = first.fl, {}
  for _, at in ipairs(first.at) do
    if region == nil or string.sub(at, 1, 8) ~= '\31region\31' then attrs[#attrs + 1] = at end
  end
  if region ~= nil then
    local kv = '"region":' .. cjson.encode(region)
    if data == '{}' then data = '{' .. kv .. '}' else data = string.sub(data, 1, -2) .. ',' .. kv .. '}' end
    attrs[#attrs + 1] = '\31region\31' .. cjson.encode(region)
  end
  local bf = false
  for _, t in ipairs(members_) do if t.bf then bf = true end end
  local r, e = new_room(nr.id, nr.codes, false, first.mode, first.max, data, {}, {},
    buckets(first.mode, first.max, attrs), a.max_rooms, a.idle_ms, bf)
  if e then return false end
  redis.call('ZREM', P .. 'timer', 'i:' .. r.id)
  r.st = 'active'
  r.tx = {}
  for _, t in ipairs(members_) do
    drop_ticket(t)
    for _, pid in ipairs(t.pl) do
      local p = player(pid)
      local node = ME
      if p and p.node ~= '' then node = p.node end
      r.pl[#r.pl + 1] = { id = pid, nm = p and p.name or '', dt = '{}', ja = stamp(), c = true, n = node }
      redis.call('HSET', P .. 'pl:' .. pid, 'room', r.id)
    end
    r.tx[#r.tx + 1] = { t = t.id, p = t.pl }
  end
  local text = cjson.encode(r)
  hook('room.created', { room = text })
  for _, s in ipairs(r.pl) do hook('player.joined', { room = text, p = s.id }) end
  redis.call('HINCRBY', P .. 'stats', 'matches_started', 1)
  hook('match.started', { room = text })
  if alloc_on() then
    STARTED[#STARTED + 1] = r.id
  else
    for _, t in ipairs(members_) do emit(t.pl, { k = 'game_start', tid = t.id }) end
  end
  commit(r, nil, false)
  flush(r)
  return true
end

local function room_count()
  local s = redis.call('HMGET', P .. 'stats', 'waiting', 'active', 'finished')
  return tonumber(s[1] or '0') + tonumber(s[2] or '0') + tonumber(s[3] or '0')
end

-- Each ticket (oldest first) takes a backfill seat that fits or anchors a
-- group that forms a room (one per entry of `rooms`, fresh ids).
look_at = function(ids, rooms, a)
  local ts, seen = {}, {}
  for _, id in ipairs(ids) do
    if not seen[id] then
      seen[id] = true
      local t = load_ticket(id)
      if t then ts[#ts + 1] = t end
    end
  end
  table.sort(ts, by_seq)
  local used = 0
  for _, t0 in ipairs(ts) do
    local t = load_ticket(t0.id)
    if t and t.away == 0 then
      local r = backfill_room(t, now())
      if r then
        seat_ticket(r, t, true)
      elseif used < #rooms and room_count() < a.max_rooms then
        local group, region = group_for(t, now(), a.fill_ms)
        if group then
          used = used + 1
          form_room(group, region, rooms[used], a)
        end
      end
    end
  end
end

-- A backfill seat opened in room `id`: the oldest fitting tickets of its
-- mode and size take it (8 looked at per pool).
offer_seats = function(id)
  for _ = 1, 16 do
    local r = load_room(id)
    if not r or #r.pl >= r.max then return end
    local prefix = r.mode .. '\31' .. r.max .. '\31'
    local cands = {}
    for _, pool in ipairs(redis.call('SMEMBERS', P .. 'tqp')) do
      if string.sub(pool, 1, #prefix) == prefix then
        local n = 0
        for _, tid in ipairs(redis.call('ZRANGE', P .. 'tqa:' .. pool, 0, -1)) do
          local t = load_ticket(tid)
          if t and t.away == 0 then
            cands[#cands + 1] = t
            n = n + 1
            if n >= 8 then break end
          end
        end
      end
    end
    table.sort(cands, by_seq)
    local found = nil
    for _, t in ipairs(cands) do
      if has_filters(r, t) and room_fits(r, t, now()) then
        found = t
        break
      end
    end
    if not found then return end
    seat_ticket(r, found, true)
  end
end

-- a: p, id, pool, spec (raw ticket record), room {id, codes}, max_rooms,
-- idle_ms, ttl_ms, fill_ms, rid, now
function OPS.queue_match(a)
  local p, e = free_player(a.p)
  if e then return e end
  local t = cjson.decode(a.spec)
  local group
  group, e = group_of(p)
  if e then return e end
  e = members_free(group) or group_fits(#group, t.max)
  if e then return e end
  t.id = a.id
  t.pl = group
  t.seq = redis.call('INCR', P .. 'seq')
  t.q = now()
  t.qa = a.now
  t.pool = a.pool
  -- Members whose connection is gone hold the ticket back until they are
  -- back.
  t.away = 0
  for _, pid in ipairs(group) do
    local m = player(pid)
    if m and not m.conn then t.away = t.away + 1 end
  end
  REPLY = { p = p.id, rid = a.rid, kind = 'ticket', tk = { id = t.id, pl = t.pl, qa = t.qa } }
  -- The other members learn of the ticket before any room it forms.
  emit(without(t.pl, p.id), { k = 'ticket_queued', tk = { id = t.id, pl = t.pl, qa = t.qa } })
  local r = t.away == 0 and backfill_room(t, now())
  if r then
    seat_ticket(r, t, false)
    return ok()
  end
  add_ticket(t, a.spec, a.ttl_ms)
  look_at({ t.id }, { a.room }, a)
  flush(nil)
  return ok()
end

-- a: p, rid
function OPS.cancel_match(a)
  local p = player(a.p)
  local t = p and load_ticket(p.tk)
  if not t then return fail('not_queued', 'you have no ticket in the queue') end
  if t.pl[1] ~= p.id then
    return fail('not_party_leader', 'only the party\'s leader can cancel the party\'s ticket')
  end
  drop_ticket(t)
  REPLY = { p = p.id, rid = a.rid, kind = 'empty' }
  emit(without(t.pl, p.id), { k = 'ticket_cancelled', tid = t.id })
  flush(nil)
  return ok()
end

-- The periodic pass over the queue (at most 5 a second, cluster-wide):
-- backfill seats that opened, then the tickets worth a look (see above).
local function ticket_pass(a)
  local last = tonumber(redis.call('GET', P .. 'tqlast') or '0')
  if now() - last < 200 then return end
  redis.call('SET', P .. 'tqlast', now())
  if last == 0 then last = now() end
  local due = redis.call('SMEMBERS', P .. 'tqwoken')
  redis.call('DEL', P .. 'tqwoken')
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'tqt', '(' .. (last - a.fill_ms), now() - a.fill_ms)) do
    due[#due + 1] = id
  end
  -- Only the tickets whose window widened after `last`.
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'tqw', '(' .. last, '+inf')) do
    local t = load_ticket(id)
    if t then
      local before, after = window(t, last), window(t, now())
      if after > before then
        local key = P .. 'tqs:' .. t.pool
        local s = t.skill
        -- Skills newly inside the window, on either side.
        local lo = redis.call('ZRANGEBYSCORE', key, num(s - after), '(' .. num(s - before), 'LIMIT', 0, 1)
        local hi = redis.call('ZRANGEBYSCORE', key, '(' .. num(s + before), num(s + after), 'LIMIT', 0, 1)
        if #lo > 0 or #hi > 0 then due[#due + 1] = id end
      end
    end
  end
  look_at(due, a.rooms, a)
end

-- The player of a party request that needs it in no party.
local function partyless(pid)
  local p = player(pid)
  if not p then return nil, fail('internal', 'unknown player; reconnect') end
  if p.pt ~= '' then
    return nil, fail('already_in_party', 'you are already in a party; leave it first')
  end
  return p, nil
end

-- a: p, id, codes (candidate party codes), max_size, rid
function OPS.create_party(a)
  local p, e = partyless(a.p)
  if e then return e end
  local code = claim_code('ptc:', a.codes, a.id)
  if not code then return fail('internal', 'no free party code; try again') end
  local pt = { id = a.id, code = code, m = { p.id }, max = a.max_size }
  save_party(pt)
  redis.call('HSET', P .. 'pl:' .. p.id, 'pt', pt.id)
  redis.call('HINCRBY', P .. 'stats', 'parties', 1)
  REPLY = { p = p.id, rid = a.rid, kind = 'party', pt = party_view(pt) }
  flush(nil)
  return ok()
end

-- a: p, code (normalized), code_given, rid
function OPS.join_party(a)
  local p, e = partyless(a.p)
  if e then return e end
  local pt = load_party(redis.call('GET', P .. 'ptc:' .. a.code) or '')
  if not pt then return fail('party_not_found', 'no party with code ' .. q(a.code_given)) end
  if #pt.m >= pt.max then
    return fail('party_full', 'the party has ' .. #pt.m .. ' of ' .. pt.max .. ' members')
  end
  cancel_party_ticket(pt, p.id)
  pt.m[#pt.m + 1] = p.id
  save_party(pt)
  redis.call('HSET', P .. 'pl:' .. p.id, 'pt', pt.id)
  party_changed(pt.id, p.id)
  REPLY = { p = p.id, rid = a.rid, kind = 'party', pt = party_view(pt) }
  flush(nil)
  return ok()
end

-- a: p, rid
function OPS.leave_party(a)
  local p = player(a.p)
  if not p or p.pt == '' then return fail('not_in_party', 'you are not in a party') end
  drop_from_party(p.id, false)
  REPLY = { p = p.id, rid = a.rid, kind = 'empty' }
  flush(nil)
  return ok()
end

-- a: p, rid
function OPS.leave_room(a)
  local p = player(a.p)
  if not p or p.room == '' then return fail('not_in_room', 'you are not in a room') end
  REPLY = { p = p.id, rid = a.rid, kind = 'empty' }
  if not leave_with(p.id, 'left') then return fail('not_in_room', 'you are not in a room') end
  flush(nil)
  return ok()
end

-- a: p, rid
function OPS.start_game(a)
  local p, r, e = my_room(a.p, true)
  if e then return e end
  if r.st ~= 'waiting' then return fail('room_not_waiting', 'the room is ' .. r.st) end
  if #r.pl < 2 then return fail('not_enough_players', 'a game needs at least 2 players') end
  local f0, v0 = open(r)
  REPLY = { p = p.id, rid = a.rid, kind = 'room' }
  start(r)
  commit(r, f0, v0)
  flush(r)
  return ok()
end

-- a: p, result (raw, or nil), ttl_ms, rid
function OPS.finish_game(a)
  local p, r, e = my_room(a.p, true)
  if e then return e end
  if r.st ~= 'active' then return fail('room_not_active', 'the room is ' .. r.st) end
  local f0, v0 = open(r)
  r.st = 'finished'
  local spec = { k = 'room_status', status = 'finished' }
  if type(a.result) == 'string' then spec.result = a.result end
  REPLY = { p = p.id, rid = a.rid, kind = 'room' }
  emit(members(r), spec)
  hook('room.finished', { room = cjson.encode(r), result = a.result or '' })
  redis.call('ZADD', P .. 'timer', now() + a.ttl_ms, 'f:' .. r.id)
  commit(r, f0, v0)
  flush(r)
  return ok()
end

-- a: p, data (raw), attrs, rid
function OPS.set_room_data(a)
  local p, r, e = my_room(a.p, true)
  if e then return e end
  local f0, v0 = open(r)
  r.data = a.data
  r.bk = buckets(r.mode, r.max, a.attrs)
  REPLY = { p = p.id, rid = a.rid, kind = 'room' }
  emit(members(r), { k = 'room_data' })
  commit(r, f0, v0)
  flush(r)
  return ok()
end

-- a: p, data (raw), rid
function OPS.set_player_data(a)
  local p, r, e = my_room(a.p, false)
  if e then return e end
  local f0, v0 = open(r)
  local i = seat_index(r, p.id)
  if not i then return fail('forbidden', 'spectators have no player data') end
  r.pl[i].dt = a.data
  REPLY = { p = p.id, rid = a.rid, kind = 'room' }
  emit(members(r), { k = 'player_data', p = p.id })
  commit(r, f0, v0)
  flush(r)
  return ok()
end

-- a: p, target, rid
function OPS.kick(a)
  local p, r, e = my_room(a.p, true)
  if e then return e end
  local target = a.target
  if target == p.id then return fail('bad_request', 'the host cannot kick itself; use leave_room') end
  if not seat_index(r, target) and not spectator_index(r, target) then
    return fail('peer_not_found', 'no player ' .. q(target) .. ' in your room')
  end
  local f0, v0 = open(r)
  r.kk[target] = true
  REPLY = { p = p.id, rid = a.rid, kind = 'empty' }
  emit({ target }, { k = 'kicked' })
  commit(r, f0, v0)
  flush(r)
  leave_with(target, 'kicked')
  return ok()
end

-- a: p, text, ts, rid
function OPS.chat(a)
  local p, r, e = my_room(a.p, false)
  if e then return e end
  local f0, v0 = open(r)
  local msg = cjson.encode({ type = 'chat', room_id = r.id, from = p.id, name = p.name,
                              text = a.text, ts = a.ts })
  r.chat[#r.chat + 1] = msg
  if #r.chat > 20 then table.remove(r.chat, 1) end
  REPLY = { p = p.id, rid = a.rid, kind = 'empty' }
  emit(members(r), { k = 'raw', x = msg })
  commit(r, f0, v0, true)
  flush(r)
  return ok()
end

-- set_ready (1.2). a: p, ready, rid
function OPS.set_ready(a)
  local p, r, e = my_room(a.p, false)
  if e then return e end
  local i = seat_index(r, p.id)
  if not i then return fail('forbidden', 'spectators are never ready') end
  if r.st ~= 'waiting' then return fail('room_not_waiting', 'the room is ' .. r.st) end
  REPLY = { p = p.id, rid = a.rid, kind = 'room' }
  if (r.pl[i].rd == true) == a.ready then
    -- The same value again: the room as it is, no event.
    flush(r)
    return ok()
  end
  local f0, v0 = open(r)
  r.pl[i].rd = a.ready
  emit(members(r), { k = 'player_ready', p = p.id, rd = a.ready })
  start_if_ready(r)
  commit(r, f0, v0)
  flush(r)
  return ok()
end

-- send (1.2), when the calling node could not route it itself (a held
-- recipient, a room it does not know, a refusal to give).
-- a: p, to ('' for every other member), event (raw, `from` set)
function OPS.send(a)
  local p, r, e = my_room(a.p, false)
  if e then return e end
  local to
  if a.to ~= '' then
    if not seat_index(r, p.id) then return fail('forbidden', 'spectators send to the whole room only') end
    if a.to == p.id or not (seat_index(r, a.to) or spectator_index(r, a.to)) then
      return fail('peer_not_found', 'no player ' .. q(a.to) .. ' in your room')
    end
    to = { a.to }
  else
    to = members(r, p.id)
  end
  -- To each recipient's node, or into its pending list while held.
  emit(to, { k = 'raw', x = a.event })
  flush(nil)
  redis.call('HINCRBY', P .. 'stats', 'messages_relayed', 1)
  return ok(#to)
end

-- a: p, to, event (raw, `from` set)
function OPS.signal(a)
  local me = redis.call('HMGET', P .. 'pl:' .. a.p, 'room', 'sp')
  local room = me[1]
  if not room or room == '' then return fail('not_in_room', 'you are not in a room') end
  local v = redis.call('HMGET', P .. 'pl:' .. a.to, 'room', 'node', 'conn', 'sp')
  if a.to == a.p or v[1] ~= room then
    return fail('peer_not_found', 'no player ' .. q(a.to) .. ' in your room')
  end
  if me[2] == '1' and v[4] == '1' then
    return fail('forbidden', 'spectators exchange signals with players only')
  end
  if v[3] == '1' then
    redis.call('PUBLISH', P .. 'ch:' .. v[2], cjson.encode({ t = 'signal', to = a.to, x = a.event }))
    redis.call('HINCRBY', P .. 'stats', 'signals_relayed', 1)
  else
    push_pending(a.to, cjson.encode({ t = 'change', ev = { { k = 'raw', to = { a.to }, x = a.event } } }),
      pending_limit())
  end
  return ok()
end

-- Admin: closes room a.id.
function OPS.close_room(a)
  local r = load_room(a.id)
  if not r then return ok(false) end
  close_room(r)
  return ok(true)
end

-- The allocation hook answered for room a.id (a.alloc: raw JSON object or
-- nil, a.aerr: the reason it failed): game_start to the members as they
-- are now, if the room is still active.
function OPS.announce(a)
  local r = load_room(a.id)
  if not r or r.st ~= 'active' then return ok(false) end
  local function spec(tid)
    local x = { k = 'game_start', al = true, tid = tid }
    if type(a.alloc) == 'string' then x.alloc = a.alloc end
    if type(a.aerr) == 'string' then x.aerr = a.aerr end
    return x
  end
  -- Players seated by a ticket get its id; everyone else the plain event.
  local plain, ticketed = {}, {}
  for _, x in ipairs(r.tx) do
    local here = {}
    for _, pid in ipairs(x.p) do
      ticketed[pid] = true
      if seat_index(r, pid) then here[#here + 1] = pid end
    end
    if #here > 0 then emit(here, spec(x.t)) end
  end
  for _, pid in ipairs(members(r)) do
    if not ticketed[pid] then plain[#plain + 1] = pid end
  end
  if #plain > 0 then emit(plain, spec(nil)) end
  flush(r)
  return ok(true)
end

-- Admin: gives up player a.p's seat now (closed) and forgets the player.
function OPS.disconnect_player(a)
  local p = player(a.p)
  if not p then return ok(false) end
  if p.room ~= '' then leave_with(p.id, 'closed') end
  if p.conn and p.node ~= '' then
    count_conn(p.node, -1)
    redis.call('PUBLISH', P .. 'ch:' .. p.node, cjson.encode({ t = 'kill', p = p.id }))
  end
  forget(p.id)
  return ok(true)
end

-- Held seats past their grace, finished rooms past their TTL, idle
-- waiting rooms (a.idle_ms): at most 100 of each per call.
function OPS.tick(a)
  local due = redis.call('ZRANGEBYSCORE', P .. 'grace', '-inf', now(), 'LIMIT', 0, 100)
  for _, pid in ipairs(due) do
    redis.call('ZREM', P .. 'grace', pid)
    local p = player(pid)
    if p and not p.conn then
      leave_with(pid, 'timeout')
      forget(pid)
    end
  end
  local timers = redis.call('ZRANGEBYSCORE', P .. 'timer', '-inf', now(), 'LIMIT', 0, 100)
  for _, tm in ipairs(timers) do
    redis.call('ZREM', P .. 'timer', tm)
    local kind, id = string.sub(tm, 1, 1), string.sub(tm, 3)
    local r = kind ~= 't' and load_room(id)
    if kind == 't' then
      -- A ticket's TTL ran out.
      local t = load_ticket(id)
      if t then
        drop_ticket(t)
        emit(t.pl, { k = 'ticket_expired', tid = t.id })
        flush(nil)
      end
    elseif r and #r.pl > 0 then
      if kind == 'f' then
        close_room(r)
      elseif r.st == 'waiting' then
        if r.act + a.idle_ms <= now() then close_room(r)
        else redis.call('ZADD', P .. 'timer', r.act + a.idle_ms, tm) end
      end
    end
  end
  ticket_pass(a)
  return ok(#due + #timers)
end

-- Records this node's beat, then hands the players of nodes that have not
-- beaten for a TTL to the reconnect grace.
-- a: conns, ttl_ms, grace_ms, watching, generation, first (this process's
-- first beat), pending (events kept per held seat)
function OPS.beat(a)
  local gen = redis.call('GET', P .. 'gen')
  if not gen then
    gen = a.generation
    redis.call('SET', P .. 'gen', gen)
  end
  if a.first then
    -- This process's first beat: players still marked connected here
    -- belong to an earlier process under the same node id (a crash and a
    -- quick restart, before its beats lapsed): their seats are held.
    for _, pid in ipairs(redis.call('SMEMBERS', P .. 'nodepl:' .. ME)) do
      local p = player(pid)
      if p and p.conn and p.node == ME then hold(pid, a.grace_ms) end
    end
    redis.call('DEL', P .. 'nodepl:' .. ME)
    redis.call('HDEL', P .. 'conns', ME)
  end
  local ttl = a.ttl_ms
  redis.call('HSET', P .. 'cfg', 'pending', a.pending, 'ttl', ttl, 'hooks', a.hooks,
    'hookcap', a.hookcap, 'alloc', a.alloc and '1' or '0')
  -- Liveness: the time of each node's last beat (Redis's clock). A node is
  -- reaped only by a node that was itself beating in time: after Redis was
  -- frozen or away, every beat looks old, and the nodes must first beat
  -- again rather than take each other for dead.
  local prev = tonumber(redis.call('ZSCORE', P .. 'beats', ME) or '-1')
  local steady = prev >= 0 and now() - prev < ttl / 2
  redis.call('ZADD', P .. 'beats', now(), ME)
  local fresh = redis.call('SADD', P .. 'nodes', ME) == 1
  if a.watching then redis.call('SADD', P .. 'listwatch', ME)
  else redis.call('SREM', P .. 'listwatch', ME) end
  local reaped = 0
  for _, node in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    local last = tonumber(redis.call('ZSCORE', P .. 'beats', node) or '-1')
    if steady and node ~= ME and now() - last > ttl then
      for _, pid in ipairs(redis.call('SMEMBERS', P .. 'nodepl:' .. node)) do
        local p = player(pid)
        if p and p.conn and p.node == node then
          hold(pid, a.grace_ms)
          reaped = reaped + 1
        end
      end
      redis.call('DEL', P .. 'nodepl:' .. node)
      redis.call('HDEL', P .. 'conns', node)
      redis.call('ZREM', P .. 'beats', node)
      redis.call('SREM', P .. 'nodes', node)
      redis.call('SREM', P .. 'listwatch', node)
    end
  end
  return ok({ gen = gen, reaped = reaped, fresh = fresh })
end

-- Graceful shutdown: this node's players are held for a.grace_ms.
function OPS.leave_node(a)
  for _, pid in ipairs(redis.call('SMEMBERS', P .. 'nodepl:' .. ME)) do
    local p = player(pid)
    if p and p.conn and p.node == ME then hold(pid, a.grace_ms) end
  end
  redis.call('DEL', P .. 'nodepl:' .. ME)
  redis.call('ZREM', P .. 'beats', ME)
  redis.call('HDEL', P .. 'conns', ME)
  redis.call('SREM', P .. 'nodes', ME)
  redis.call('SREM', P .. 'listwatch', ME)
  return ok(true)
end

-- Whether this node has room-list subscribers (a.on).
function OPS.watch(a)
  if a.on then redis.call('SADD', P .. 'listwatch', ME)
  else redis.call('SREM', P .. 'listwatch', ME) end
  return ok(true)
end

function OPS.stats(_)
  local s = redis.call('HGETALL', P .. 'stats')
  local out = {}
  for i = 1, #s, 2 do out[s[i]] = tonumber(s[i + 1]) end
  -- Connections of the nodes that beat within their TTL.
  local conns = 0
  local ttl = tonumber(redis.call('HGET', P .. 'cfg', 'ttl') or '3000')
  for _, node in ipairs(redis.call('ZRANGEBYSCORE', P .. 'beats', now() - ttl, '+inf')) do
    conns = conns + tonumber(redis.call('HGET', P .. 'conns', node) or '0')
  end
  out.connections = conns
  return cjson.encode({ ok = out })
end

-- Raw room records of a listing. a: which ('w' or 'a'), mode ('' any), limit
function OPS.list_rooms(a)
  local key = P .. 'list:' .. a.which
  if a.mode ~= '' then key = key .. ':' .. a.mode end
  local out = {}
  if a.limit <= 0 then return out end
  local ids = redis.call('ZRANGE', key, 0, a.limit - 1)
  for _, id in ipairs(ids) do
    local s = redis.call('GET', P .. 'room:' .. id)
    if s then out[#out + 1] = s end
  end
  return out
end

-- The recount of the rooms: each room's seats and places against its
-- players, its code and timers; what the derived data should hold.
-- Returns nil and the recount, or a message naming the first difference.
local function recount_rooms(rooms, players)
  local want = { waiting = 0, active = 0, finished = 0, seats = 0, held = 0, seats_waiting = 0 }
  local mm, bf, lists, seated = {}, {}, {}, {}
  local function add(set, key, id)
    set[key] = set[key] or {}
    set[key][id] = true
  end
  for id, r in pairs(rooms) do
    if #r.pl == 0 then return 'room ' .. id .. ' is empty but alive' end
    if #r.pl > r.max then return 'room ' .. id .. ' over capacity' end
    if redis.call('GET', P .. 'code:' .. r.code) ~= id then
      return 'room ' .. id .. ' code not indexed'
    end
    for _, s in ipairs(r.pl) do
      if seated[s.id] then return 'player ' .. s.id .. ' has two seats' end
      seated[s.id] = id
      local p = players[s.id]
      if not p or p.room ~= id then
        return 'player ' .. s.id .. ' disagrees with its seat'
      end
      if p.conn ~= s.c then return 'player ' .. s.id .. ' connection flag differs' end
    end
    if #r.sp > (r.msp or 0) then return 'room ' .. id .. ' over its spectator places' end
    for _, s in ipairs(r.sp) do
      if seated[s.id] then return 'player ' .. s.id .. ' is in two places' end
      seated[s.id] = id
      local p = players[s.id]
      if not p or p.room ~= id or redis.call('HGET', P .. 'pl:' .. s.id, 'sp') ~= '1' then
        return 'spectator ' .. s.id .. ' disagrees with its place'
      end
      if p.conn ~= s.c then return 'spectator ' .. s.id .. ' connection flag differs' end
    end
    local f = footprint(r)
    want[f.st] = want[f.st] + 1
    want.seats = want.seats + f.seats
    want.held = want.held + f.held
    if f.st == 'waiting' then want.seats_waiting = want.seats_waiting + f.seats end
    if f.matchable then
      local sets = (f.matchable == 'bf') and bf or mm
      for _, b in ipairs(f.bkl) do add(sets, b, id) end
    end
    if f.listed then
      local l = (f.st == 'waiting') and 'w' or 'a'
      add(lists, l, id)
      add(lists, l .. ':' .. f.mode, id)
    end
    local idle = redis.call('ZSCORE', P .. 'timer', 'i:' .. id)
    if (f.st == 'waiting') ~= (idle ~= false) then
      return f.st .. ' room ' .. id .. (idle and ' has' or ' has no') .. ' idle timer'
    end
    local fin = redis.call('ZSCORE', P .. 'timer', 'f:' .. id)
    if (f.st == 'finished') ~= (fin ~= false) then
      return f.st .. ' room ' .. id .. (fin and ' has' or ' has no') .. ' close timer'
    end
  end
  return nil, { want = want, mm = mm, bf = bf, lists = lists, seated = seated }
end

-- The stats counters against the recount.
local function check_counters(want)
  local s = redis.call('HGETALL', P .. 'stats')
  local have = {}
  for i = 1, #s, 2 do have[s[i]] = tonumber(s[i + 1]) end
  for k, v in pairs(want) do
    if (have[k] or 0) ~= v then
      return 'counter ' .. k .. ' is ' .. tostring(have[k]) .. ', recount ' .. v
    end
  end
  return nil
end

-- The sorted sets under `prefix` (matchmaking, backfill, listings) hold
-- exactly the rooms of `sets`; a message naming the first difference.
local function same_sets(prefix, sets)
  for _, k in ipairs(redis.call('KEYS', P .. prefix .. '*')) do
    local name = string.sub(k, #P + #prefix + 1)
    local ids = redis.call('ZRANGE', k, 0, -1)
    local wanted = sets[name] or {}
    local n = 0
    for _, id in pairs(ids) do
      if not wanted[id] then return 'room ' .. id .. ' should not be in ' .. prefix .. name end
      n = n + 1
    end
    for id, _ in pairs(wanted) do
      n = n - 1
      if not redis.call('ZSCORE', k, id) then return 'room ' .. id .. ' missing from ' .. prefix .. name end
    end
    sets[name] = nil
  end
  for name, ids in pairs(sets) do
    for id, _ in pairs(ids) do return 'room ' .. id .. ' missing from ' .. prefix .. name end
  end
  return nil
end

-- The players against their seats, tokens and grace deadlines; the
-- connections of each node as recounted.
local function check_players(players, seated)
  local conns = {}
  for pid, p in pairs(players) do
    if p.room ~= '' and seated[pid] ~= p.room then
      return 'player ' .. pid .. ' points at a room without its seat'
    end
    if p.tok ~= '' and redis.call('GET', P .. 'tok:' .. p.tok) ~= pid then
      return 'token of ' .. pid .. ' is stale'
    end
    if p.conn then conns[p.node] = (conns[p.node] or 0) + 1 end
    if not p.conn and not redis.call('ZSCORE', P .. 'grace', pid) then
      return 'held player ' .. pid .. ' has no grace deadline'
    end
  end
  for _, k in ipairs(redis.call('KEYS', P .. 'tok:*')) do
    local pid = redis.call('GET', k)
    if not players[pid] or P .. 'tok:' .. players[pid].tok ~= k then
      return 'token ' .. k .. ' of no player'
    end
  end
  return nil, conns
end

-- Tickets: each indexed once in its pool (both orders) and by time, its
-- players in no room and pointing at it, its expiry pending; the counter
-- right; no player pointing at a ticket that is gone.
local function check_tickets(players)
  local tickets = {}
  local ntk = 0
  for _, k in ipairs(redis.call('KEYS', P .. 'tk:*')) do
    local t = load_ticket(string.sub(k, #P + 4))
    tickets[t.id] = t
    ntk = ntk + 1
    if not redis.call('ZSCORE', P .. 'tqa:' .. t.pool, t.id)
      or not redis.call('ZSCORE', P .. 'tqs:' .. t.pool, tmember(t))
      or not redis.call('ZSCORE', P .. 'tqt', t.id)
      or redis.call('SISMEMBER', P .. 'tqp', t.pool) == 0 then
      return 'ticket ' .. t.id .. ' is not indexed'
    end
    if not redis.call('ZSCORE', P .. 'timer', 't:' .. t.id) then
      return 'ticket ' .. t.id .. ' has no expiry timer'
    end
    for _, pid in ipairs(t.pl) do
      local p = players[pid]
      if not p or p.room ~= '' or p.tk ~= t.id then
        return 'ticket ' .. t.id .. ' holds ' .. pid .. ', seated, unknown or elsewhere'
      end
    end
  end
  for pid, p in pairs(players) do
    if p.tk ~= '' and not tickets[p.tk] then
      return 'player ' .. pid .. ' points at ticket ' .. p.tk .. ' that is gone'
    end
  end
  for _, id in ipairs(redis.call('ZRANGE', P .. 'tqw', 0, -1)) do
    if not tickets[id] then return 'tqw holds ' .. id .. ', no ticket' end
  end
  if redis.call('ZCARD', P .. 'tqt') ~= ntk then
    return 'tqt holds ' .. redis.call('ZCARD', P .. 'tqt') .. ' tickets of ' .. ntk
  end
  if tonumber(redis.call('HGET', P .. 'stats', 'tickets_queued') or '0') ~= ntk then
    return 'tickets_queued differs from the ' .. ntk .. ' tickets'
  end
  return nil, tickets
end

-- Every timer and grace deadline belongs to something alive.
local function check_timers(rooms, tickets, players)
  for _, tm in ipairs(redis.call('ZRANGE', P .. 'timer', 0, -1)) do
    local id = string.sub(tm, 3)
    if string.sub(tm, 1, 1) == 't' then
      if not tickets[id] then return 'timer ' .. tm .. ' of no ticket' end
    elseif not rooms[id] then
      return 'timer ' .. tm .. ' of no room'
    end
  end
  for _, pid in ipairs(redis.call('ZRANGE', P .. 'grace', 0, -1)) do
    if not players[pid] or players[pid].conn then
      return 'grace deadline of ' .. pid .. ' who is not held'
    end
  end
  return nil
end

-- Each node's connection count against the recount.
local function check_conns(conns)
  local live = redis.call('HGETALL', P .. 'conns')
  for i = 1, #live, 2 do
    if (conns[live[i]] or 0) ~= tonumber(live[i + 1]) then
      return 'node ' .. live[i] .. ' counts ' .. live[i + 1] .. ' connections, recount '
        .. (conns[live[i]] or 0)
    end
    conns[live[i]] = nil
  end
  for node, n in pairs(conns) do
    if n ~= 0 then return 'node ' .. node .. ' has ' .. n .. ' uncounted connections' end
  end
  return nil
end

-- Recounts everything from the rooms and players and compares it with the
-- derived data (counters, matchmaking sets, listings, codes, timers,
-- connection counts): the store's `check_invariants`. For tests: it scans
-- every key. Returns ok(true) or an `internal` failure naming the first
-- difference.
function OPS.check_invariants(_)
  local rooms, players = {}, {}
  for _, k in ipairs(redis.call('KEYS', P .. 'room:*')) do
    local r = load_room(string.sub(k, #P + 6))
    rooms[r.id] = r
  end
  for _, k in ipairs(redis.call('KEYS', P .. 'pl:*')) do
    local pid = string.sub(k, #P + 4)
    players[pid] = player(pid)
  end
  local bad, got = recount_rooms(rooms, players)
  if bad then return fail('internal', bad) end
  bad = check_counters(got.want)
    or same_sets('mm:', got.mm) or same_sets('bf:', got.bf) or same_sets('list:', got.lists)
  if bad then return fail('internal', bad) end
  local conns, tickets
  bad, conns = check_players(players, got.seated)
  if bad then return fail('internal', bad) end
  bad, tickets = check_tickets(players)
  if bad then return fail('internal', bad) end
  bad = check_timers(rooms, tickets, players) or check_conns(conns)
  if bad then return fail('internal', bad) end
  return ok(true)
end

-- Sizes of the lobby's keys, to prove nothing is left behind.
function OPS.footprint(_)
  local function n(pattern) return #redis.call('KEYS', P .. pattern) end
  return ok({
    rooms = n('room:*'), codes = n('code:*'), players = n('pl:*'), index_buckets = n('mm:*') + n('bf:*'),
    listed = redis.call('ZCARD', P .. 'list:w') + redis.call('ZCARD', P .. 'list:a'),
    tokens = n('tok:*'),
    timers = redis.call('ZCARD', P .. 'timer') + redis.call('ZCARD', P .. 'grace'),
    pending = n('pend:*') + n('pendx:*'),
    tickets = n('tk:*'),
    parties = n('pty:*'),
  })
end

local op = OPS[OP]
if op == nil then return fail('internal', 'unknown store operation ' .. tostring(OP)) end
local result = op(A)
if #LATER > 0 then
  EV = LATER
  LATER = {}
  flush(nil)
end
for _, msg in ipairs(LISTING) do redis.call('PUBLISH', P .. 'ch:list', msg) end
return result
