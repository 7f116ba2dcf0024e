-- Rendezvous cluster lobby: every change of rooms, seats and players, as one
-- atomic script. Loaded once per Redis (SCRIPT LOAD) and called by SHA with
--   ARGV[1] = operation, ARGV[2] = calling node id, ARGV[3..] = arguments.
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
-- tok:<token>, mm:<bucket> (zset, seq), list:<w|a>[:<mode>] (zset, seq),
-- stats (hash), seq, grace (zset, deadline), timer (zset, deadline),
-- pend:<player> (list), pendx:<player>, nodes (set), beats (zset), conns (hash), cfg (hash),
-- nodepl:<node> (set), gen, listwatch (set of nodes).
-- The script computes key names itself, so it needs a single Redis (or a
-- primary with replicas), not Redis Cluster.

local P = 'rv:'
local OP = ARGV[1]
local ME = ARGV[2]

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

local function fail(code, msg)
  return cjson.encode({ e = code, m = msg })
end

-- ---------------------------------------------------------------- players

local function player(pid)
  local v = redis.call('HMGET', P .. 'pl:' .. pid, 'name', 'room', 'node', 'conn', 'epoch', 'tok')
  if not v[1] then return nil end
  return { id = pid, name = v[1], room = v[2] or '', node = v[3] or '', conn = v[4] == '1',
           epoch = tonumber(v[5] or '0'), tok = v[6] or '' }
end

-- Live connections per node (hash conns: node -> count), changed with the
-- `conn` flag of players so `connections` is exact.
local function count_conn(node, delta)
  if node ~= nil and node ~= '' then redis.call('HINCRBY', P .. 'conns', node, delta) end
end

local function forget(pid)
  local p = player(pid)
  if not p then return end
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
  r.chat = r.chat or {}; r.bk = r.bk or {}
  return r
end

local function seat_index(r, pid)
  for i, s in ipairs(r.pl) do
    if s.id == pid then return i end
  end
  return nil
end

local function members(r, except)
  local out = {}
  for _, s in ipairs(r.pl) do
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
  return {
    st = r.st, seats = #r.pl, held = held, seq = r.seq, mode = r.mode, id = r.id,
    matchable = (not r.priv) and r.st == 'waiting' and #r.pl < r.max and not restricted,
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
    for _, k in ipairs(f.bkl) do
      if sign > 0 then redis.call('ZADD', P .. 'mm:' .. k, f.seq, f.id)
      else redis.call('ZREM', P .. 'mm:' .. k, f.id) end
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

-- The room as the live room list shows it: public, waiting, not empty.
local function viewable(r)
  return r ~= nil and #r.pl > 0 and (not r.priv) and r.st == 'waiting'
end

-- ----------------------------------------------------------------- events

-- Events of the current change, as specs the nodes render: {k = kind,
-- to = {players}, ...}. `flush` sends them with the room snapshot.
local EV = {}
local REPLY = nil

local function emit(to, spec)
  if #to == 0 then return end
  spec.to = to
  EV[#EV + 1] = spec
end

local function publish_listing(change, r, mode, id)
  if redis.call('SCARD', P .. 'listwatch') == 0 then return end
  local msg = { k = change, mode = mode, id = id }
  if r ~= nil then msg.room = r end
  redis.call('PUBLISH', P .. 'ch:list', cjson.encode(msg))
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
  local notice = { ev = EV }
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
    local quiet = cjson.encode({ ev = EV, room = r })
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
  elseif v1 and not quiet then
    publish_listing('updated', r, r.mode, r.id)
  end
  if empty then
    redis.call('DEL', P .. 'room:' .. r.id, P .. 'code:' .. r.code)
    redis.call('ZREM', P .. 'timer', 'i:' .. r.id, 'f:' .. r.id)
  else
    redis.call('SET', P .. 'room:' .. r.id, cjson.encode(r))
  end
end

-- Opens a change of room `r`: returns its footprint and list visibility.
local function open(r)
  return footprint(r), viewable(r)
end

-- ------------------------------------------------------------- operations

-- The player gives up its seat (left, kicked, timeout, closed); the others
-- learn it, and of a new host when the host went.
local function leave_with(pid, reason)
  local p = player(pid)
  if not p or p.room == '' then return false end
  local r = load_room(p.room)
  redis.call('HSET', P .. 'pl:' .. pid, 'room', '')
  if not p.conn then forget(pid) end
  if not r then return true end
  local f0, v0 = open(r)
  local i = seat_index(r, pid)
  if not i then return true end
  table.remove(r.pl, i)
  local rest = members(r)
  emit(rest, { k = 'player_left', p = pid, reason = reason })
  if i == 1 and #rest > 0 then
    emit(rest, { k = 'host_changed', p = r.pl[1].id })
  end
  commit(r, f0, v0)
  flush(r)
  return true
end

-- Waiting to active, with room_status and game_start to every member.
local function start(r)
  r.st = 'active'
  local all = members(r)
  emit(all, { k = 'room_status', status = 'active' })
  emit(all, { k = 'game_start' })
  redis.call('HINCRBY', P .. 'stats', 'matches_started', 1)
end

-- Seats a player whose eligibility was checked.
local function seat(r, p)
  local others = members(r)
  r.pl[#r.pl + 1] = { id = p.id, nm = p.name, dt = '{}', ja = ARGV[#ARGV], c = true, n = ME }
  emit(others, { k = 'player_joined', p = p.id })
  emit({ p.id }, { k = 'chat_history' })
  redis.call('HSET', P .. 'pl:' .. p.id, 'room', r.id)
  if #r.pl >= r.max then start(r) end
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
  return p, nil
end

-- A new room with the first free code among the candidates.
local function new_room(id, codes, priv, mode, max, data, ap, ar, bk, max_rooms, idle_ms)
  local s = redis.call('HMGET', P .. 'stats', 'waiting', 'active', 'finished')
  local total = tonumber(s[1] or '0') + tonumber(s[2] or '0') + tonumber(s[3] or '0')
  if total >= max_rooms then
    return nil, fail('limit_reached', 'the server holds its maximum of ' .. max_rooms .. ' rooms')
  end
  local code = nil
  for _, c in ipairs(codes) do
    if redis.call('SET', P .. 'code:' .. c, id, 'NX') then
      code = c
      break
    end
  end
  if not code then return nil, fail('internal', 'no free join code; try again') end
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('ZADD', P .. 'timer', now() + idle_ms, 'i:' .. id)
  return {
    id = id, code = code, priv = priv, mode = mode, max = max, st = 'waiting',
    ca = ARGV[#ARGV], seq = seq, data = data, pl = {}, kk = {}, ap = ap, ar = ar,
    chat = {}, bk = bk, act = now(),
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
  return cjson.encode({ ok = v })
end

-- Closes a room: every member gets player_left (closed) for every player.
local function close_room(r)
  local f0, v0 = open(r)
  local all = members(r)
  for _, pid in ipairs(all) do
    emit(all, { k = 'player_left', p = pid, reason = 'closed' })
  end
  flush(r)
  for _, pid in ipairs(all) do
    local p = player(pid)
    if p then
      redis.call('HSET', P .. 'pl:' .. pid, 'room', '')
      if not p.conn then forget(pid) end
    end
  end
  r.pl = {}
  commit(r, f0, v0)
end

-- A held seat / connection: conn off, grace timer on, the others told.
local function hold(pid, grace_ms)
  local p = player(pid)
  if not p then return end
  if p.conn then count_conn(p.node, -1) end
  redis.call('HSET', P .. 'pl:' .. pid, 'conn', '0', 'seen', now())
  if p.node ~= '' then redis.call('SREM', P .. 'nodepl:' .. p.node, pid) end
  redis.call('ZADD', P .. 'grace', now() + grace_ms, pid)
  local r = load_room(p.room)
  if not r then return end
  local i = seat_index(r, pid)
  if not i then return end
  local f0, v0 = open(r)
  r.pl[i].c = false
  emit(members(r, pid), { k = 'player_disconnected', p = pid })
  commit(r, f0, v0)
  flush(r)
end

-- ------------------------------------------------------------------ dispatch

if OP == 'hello' then
  -- ARGV: conn_id, fresh_pid, name, resume_token ('' none), jwt_sub ('' none),
  -- new_token
  local conn_id, fresh, name, resume, sub, new_tok = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  local pid, resumed = fresh, false
  if sub ~= '' then
    pid = sub
    resumed = redis.call('EXISTS', P .. 'pl:' .. pid) == 1
  elseif resume ~= '' then
    local owner = redis.call('GET', P .. 'tok:' .. resume)
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
        redis.call('PUBLISH', P .. 'ch:' .. p.node, cjson.encode({ ctl = 'replaced', p = pid }))
      end
    end
    if p.node ~= '' and p.node ~= ME then redis.call('SREM', P .. 'nodepl:' .. p.node, pid) end
    name = p.name
  end
  local epoch = redis.call('HINCRBY', P .. 'pl:' .. pid, 'epoch', 1)
  redis.call('HSET', P .. 'pl:' .. pid, 'name', name, 'node', ME, 'conn', '1', 'seen', now(), 'tok', new_tok)
  if not p then redis.call('HSET', P .. 'pl:' .. pid, 'room', '') end
  redis.call('SET', P .. 'tok:' .. new_tok, pid)
  redis.call('SADD', P .. 'nodepl:' .. ME, pid)
  count_conn(ME, 1)
  redis.call('ZREM', P .. 'grace', pid)
  local pending = redis.call('LRANGE', P .. 'pend:' .. pid, 0, -1)
  local dropped = tonumber(redis.call('GET', P .. 'pendx:' .. pid) or '0')
  redis.call('DEL', P .. 'pend:' .. pid, P .. 'pendx:' .. pid)
  local r = nil
  if p and p.room ~= '' then
    r = load_room(p.room)
    local i = r and seat_index(r, pid)
    if i then
      local f0, v0 = open(r)
      local was = r.pl[i].c
      r.pl[i].c = true
      r.pl[i].n = ME
      if not was then
        emit(members(r, pid), { k = 'player_reconnected', p = pid })
      end
      commit(r, f0, v0, was)
    end
  end
  -- The welcome goes through this node's channel too, so it comes before
  -- any event published after this script.
  redis.call('PUBLISH', P .. 'ch:' .. ME, cjson.encode({
    hello = { conn = conn_id, p = pid, name = name, resumed = resumed, tok = new_tok,
              epoch = epoch, pending = pending, dropped = dropped },
    room = r,
  }))
  flush(r)
  return ok({ p = pid, epoch = epoch })

elseif OP == 'bye' then
  -- ARGV: pid, epoch, grace_ms
  local pid, epoch, grace = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  local p = player(pid)
  if not p or p.epoch ~= epoch or p.node ~= ME or not p.conn then return ok(false) end
  hold(pid, grace)
  -- Behind every notice this node got while the player was still marked
  -- connected here: the node hands what it caught for the player back.
  redis.call('PUBLISH', P .. 'ch:' .. ME, cjson.encode({ ctl = 'gone', p = pid }))
  return ok(true)

elseif OP == 'keep' then
  -- ARGV: pid, event texts... Events a node caught for a player between its
  -- connection's end and `bye`: they go before the pending list, if the
  -- player has not come back meanwhile.
  local pid = ARGV[3]
  local p = player(pid)
  if not p or p.conn then return ok(false) end
  local key = P .. 'pend:' .. pid
  for i = #ARGV, 4, -1 do
    redis.call('LPUSH', key, cjson.encode({ ev = { { k = 'raw', to = { pid }, x = ARGV[i] } } }))
  end
  local n = redis.call('LLEN', key)
  if n > pending_limit() then
    redis.call('LTRIM', key, n - pending_limit(), -1)
    redis.call('INCRBY', P .. 'pendx:' .. pid, n - pending_limit())
  end
  return ok(true)

elseif OP == 'create' then
  -- ARGV: pid, room_id, codes(json), private('1'/'0'), mode, max, data(raw),
  -- allowed_players(json), allowed_roles(json), attrs(json), max_rooms,
  -- idle_ms, rid(raw), now_string
  local p, e = free_player(ARGV[3])
  if e then return e end
  local r
  r, e = new_room(ARGV[4], cjson.decode(ARGV[5]), ARGV[6] == '1', ARGV[7], tonumber(ARGV[8]),
    ARGV[9], cjson.decode(ARGV[10]), cjson.decode(ARGV[11]),
    buckets(ARGV[7], tonumber(ARGV[8]), cjson.decode(ARGV[12])),
    tonumber(ARGV[13]), tonumber(ARGV[14]))
  if e then return e end
  seat(r, p)
  commit(r, nil, false)
  REPLY = { p = p.id, rid = ARGV[15], kind = 'room' }
  flush(r)
  return ok()

elseif OP == 'join' then
  -- ARGV: pid, room_id, code, roles(json), rid, now_string
  local p, e = free_player(ARGV[3])
  if e then return e end
  local id = ARGV[4]
  if id == '' then
    id = redis.call('GET', P .. 'code:' .. ARGV[5]) or ''
  end
  local r = load_room(id)
  if not r then
    if ARGV[4] ~= '' then return fail('room_not_found', 'no room "' .. ARGV[4] .. '"') end
    return fail('room_not_found', 'no room with code "' .. ARGV[5] .. '"')
  end
  local admits = not r.kk[p.id]
  if admits and (#r.ap > 0 or #r.ar > 0) then
    admits = false
    for _, a in ipairs(r.ap) do if a == p.id then admits = true end end
    for _, role in ipairs(cjson.decode(ARGV[6])) do
      for _, a in ipairs(r.ar) do if a == role then admits = true end end
    end
  end
  if not admits then
    if r.kk[p.id] then return fail('forbidden', 'you were kicked from this room') end
    return fail('forbidden', 'this room is restricted to other players')
  end
  if #r.pl >= r.max then
    return fail('room_full', 'room ' .. r.id .. ' has ' .. #r.pl .. ' of ' .. r.max .. ' players')
  end
  if r.st ~= 'waiting' then return fail('room_not_waiting', 'room ' .. r.id .. ' is ' .. r.st) end
  local f0, v0 = open(r)
  seat(r, p)
  commit(r, f0, v0)
  REPLY = { p = p.id, rid = ARGV[7], kind = 'room' }
  flush(r)
  return ok()

elseif OP == 'match' then
  -- ARGV: pid, attrs(json: one per filter),
  -- filters(raw, the new room's data), new_room_id, codes(json), max_rooms,
  -- idle_ms, mode, max, rid, now_string
  local p, e = free_player(ARGV[3])
  if e then return e end
  local bks = buckets(ARGV[10], tonumber(ARGV[11]), cjson.decode(ARGV[4]))
  -- Walk the smallest bucket; a matching room is in all of them.
  local best, best_n = nil, nil
  for _, b in ipairs(bks) do
    local n = redis.call('ZCARD', P .. 'mm:' .. b)
    if best_n == nil or n < best_n then best, best_n = b, n end
  end
  local found = nil
  local from, batch = 0, 1
  while found == nil and best_n > 0 and from < best_n do
    -- Usually the first room fits: read one, then wider batches.
    local ids = redis.call('ZRANGE', P .. 'mm:' .. best, from, from + batch - 1)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      local all = true
      for _, b in ipairs(bks) do
        if b ~= best and not redis.call('ZSCORE', P .. 'mm:' .. b, id) then
          all = false
          break
        end
      end
      if all then
        local r = load_room(id)
        if r and not r.kk[p.id] and r.st == 'waiting' and #r.pl < r.max then
          found = r
          break
        end
      end
    end
    from = from + batch
    batch = math.min(batch * 8, 512)
  end
  local created = false
  local f0, v0 = nil, false
  local r = found
  if r then
    f0, v0 = open(r)
  else
    r, e = new_room(ARGV[6], cjson.decode(ARGV[7]), false, ARGV[10], tonumber(ARGV[11]),
      ARGV[5], {}, {}, bks, tonumber(ARGV[8]), tonumber(ARGV[9]))
    if e then return e end
    created = true
  end
  seat(r, p)
  commit(r, f0, v0)
  REPLY = { p = p.id, rid = ARGV[12], kind = 'match', created = created }
  flush(r)
  return ok()

elseif OP == 'leave' then
  -- ARGV: pid, rid
  local p = player(ARGV[3])
  if not p or p.room == '' then return fail('not_in_room', 'you are not in a room') end
  REPLY = { p = p.id, rid = ARGV[4], kind = 'empty' }
  if not leave_with(p.id, 'left') then return fail('not_in_room', 'you are not in a room') end
  flush(nil)
  return ok()

elseif OP == 'start' then
  -- ARGV: pid, rid
  local p, r, e = my_room(ARGV[3], true)
  if e then return e end
  if r.st ~= 'waiting' then return fail('room_not_waiting', 'the room is ' .. r.st) end
  if #r.pl < 2 then return fail('not_enough_players', 'a game needs at least 2 players') end
  local f0, v0 = open(r)
  REPLY = { p = p.id, rid = ARGV[4], kind = 'room' }
  start(r)
  commit(r, f0, v0)
  flush(r)
  return ok()

elseif OP == 'finish' then
  -- ARGV: pid, result(raw or ''), ttl_ms, rid
  local p, r, e = my_room(ARGV[3], true)
  if e then return e end
  if r.st ~= 'active' then return fail('room_not_active', 'the room is ' .. r.st) end
  local f0, v0 = open(r)
  r.st = 'finished'
  local spec = { k = 'room_status', status = 'finished' }
  if ARGV[4] ~= '' then spec.result = ARGV[4] end
  REPLY = { p = p.id, rid = ARGV[6], kind = 'room' }
  emit(members(r), spec)
  redis.call('ZADD', P .. 'timer', now() + tonumber(ARGV[5]), 'f:' .. r.id)
  commit(r, f0, v0)
  flush(r)
  return ok()

elseif OP == 'room_data' then
  -- ARGV: pid, data(raw), attrs(json), rid
  local p, r, e = my_room(ARGV[3], true)
  if e then return e end
  local f0, v0 = open(r)
  r.data = ARGV[4]
  r.bk = buckets(r.mode, r.max, cjson.decode(ARGV[5]))
  REPLY = { p = p.id, rid = ARGV[6], kind = 'room' }
  emit(members(r), { k = 'room_data' })
  commit(r, f0, v0)
  flush(r)
  return ok()

elseif OP == 'player_data' then
  -- ARGV: pid, data(raw), rid
  local p, r, e = my_room(ARGV[3], false)
  if e then return e end
  local f0, v0 = open(r)
  local i = seat_index(r, p.id)
  if not i then return fail('not_in_room', 'you are not in a room') end
  r.pl[i].dt = ARGV[4]
  REPLY = { p = p.id, rid = ARGV[5], kind = 'room' }
  emit(members(r), { k = 'player_data', p = p.id })
  commit(r, f0, v0)
  flush(r)
  return ok()

elseif OP == 'kick' then
  -- ARGV: pid, target, rid
  local p, r, e = my_room(ARGV[3], true)
  if e then return e end
  local target = ARGV[4]
  if target == p.id then return fail('bad_request', 'the host cannot kick itself; use leave_room') end
  if not seat_index(r, target) then
    return fail('peer_not_found', 'no player "' .. target .. '" in your room')
  end
  local f0, v0 = open(r)
  r.kk[target] = true
  REPLY = { p = p.id, rid = ARGV[5], kind = 'empty' }
  emit({ target }, { k = 'kicked' })
  commit(r, f0, v0)
  flush(r)
  leave_with(target, 'kicked')
  return ok()

elseif OP == 'chat' then
  -- ARGV: pid, text, ts, rid
  local p, r, e = my_room(ARGV[3], false)
  if e then return e end
  local f0, v0 = open(r)
  local msg = cjson.encode({ type = 'chat', room_id = r.id, from = p.id, name = p.name,
                              text = ARGV[4], ts = ARGV[5] })
  r.chat[#r.chat + 1] = msg
  if #r.chat > 20 then table.remove(r.chat, 1) end
  REPLY = { p = p.id, rid = ARGV[6], kind = 'empty' }
  emit(members(r), { k = 'raw', x = msg })
  commit(r, f0, v0, true)
  flush(r)
  return ok()

elseif OP == 'signal' then
  -- ARGV: pid, target, event(raw, `from` set)
  local pid, to = ARGV[3], ARGV[4]
  local room = redis.call('HGET', P .. 'pl:' .. pid, 'room')
  if not room or room == '' then return fail('not_in_room', 'you are not in a room') end
  local v = redis.call('HMGET', P .. 'pl:' .. to, 'room', 'node', 'conn')
  if to == pid or v[1] ~= room then
    return fail('peer_not_found', 'no player "' .. to .. '" in your room')
  end
  if v[3] == '1' then
    -- A raw delivery: "R" .. player .. "\n" .. event.
    redis.call('PUBLISH', P .. 'ch:' .. v[2], 'R' .. to .. '\n' .. ARGV[5])
    redis.call('HINCRBY', P .. 'stats', 'signals_relayed', 1)
  else
    push_pending(to, cjson.encode({ ev = { { k = 'raw', to = { to }, x = ARGV[5] } } }), pending_limit())
  end
  return ok()

elseif OP == 'close' then
  -- ARGV: room_id
  local r = load_room(ARGV[3])
  if not r then return ok(false) end
  close_room(r)
  return ok(true)

elseif OP == 'remove' then
  -- ARGV: pid. Admin: gives up the seat now (closed) and forgets the player.
  local p = player(ARGV[3])
  if not p then return ok(false) end
  if p.room ~= '' then leave_with(p.id, 'closed') end
  if p.conn and p.node ~= '' then
    count_conn(p.node, -1)
    redis.call('PUBLISH', P .. 'ch:' .. p.node, cjson.encode({ ctl = 'kill', p = p.id }))
  end
  forget(p.id)
  return ok(true)

elseif OP == 'tick' then
  -- ARGV: idle_ms. Held seats past their grace, finished rooms past their
  -- TTL, idle waiting rooms: at most 100 of each per call.
  local idle = tonumber(ARGV[3])
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
    local r = load_room(id)
    if r and #r.pl > 0 then
      if kind == 'f' then
        close_room(r)
      elseif r.st == 'waiting' then
        if r.act + idle <= now() then close_room(r)
        else redis.call('ZADD', P .. 'timer', r.act + idle, tm) end
      end
    end
  end
  return ok(#due + #timers)

elseif OP == 'beat' then
  -- ARGV: connections, ttl_ms, grace_ms, watching('1'/'0'), generation,
  -- first beat of this process ('1'/'0'), events kept per held seat.
  -- Records this node's beat, then hands the players of nodes that have
  -- not beaten for a TTL to the reconnect grace.
  local gen = redis.call('GET', P .. 'gen')
  if not gen then
    gen = ARGV[7]
    redis.call('SET', P .. 'gen', gen)
  end
  if ARGV[8] == '1' then
    -- This process's first beat: players still marked connected here
    -- belong to an earlier process under the same node id (a crash and a
    -- quick restart, before its beats lapsed): their seats are held.
    for _, pid in ipairs(redis.call('SMEMBERS', P .. 'nodepl:' .. ME)) do
      local p = player(pid)
      if p and p.conn and p.node == ME then hold(pid, tonumber(ARGV[5])) end
    end
    redis.call('DEL', P .. 'nodepl:' .. ME)
    redis.call('HDEL', P .. 'conns', ME)
  end
  local ttl = tonumber(ARGV[4])
  redis.call('HSET', P .. 'cfg', 'pending', ARGV[9], 'ttl', ttl)
  -- Liveness: the time of each node's last beat (Redis's clock). A node is
  -- reaped only by a node that was itself beating in time: after Redis was
  -- frozen or away, every beat looks old, and the nodes must first beat
  -- again rather than take each other for dead.
  local prev = tonumber(redis.call('ZSCORE', P .. 'beats', ME) or '-1')
  local steady = prev >= 0 and now() - prev < ttl / 2
  redis.call('ZADD', P .. 'beats', now(), ME)
  local fresh = redis.call('SADD', P .. 'nodes', ME) == 1
  if ARGV[6] == '1' then redis.call('SADD', P .. 'listwatch', ME)
  else redis.call('SREM', P .. 'listwatch', ME) end
  local reaped = 0
  for _, node in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    local last = tonumber(redis.call('ZSCORE', P .. 'beats', node) or '-1')
    if steady and node ~= ME and now() - last > ttl then
      for _, pid in ipairs(redis.call('SMEMBERS', P .. 'nodepl:' .. node)) do
        local p = player(pid)
        if p and p.conn and p.node == node then
          hold(pid, tonumber(ARGV[5]))
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

elseif OP == 'leave_node' then
  -- ARGV: grace_ms. Graceful shutdown: this node's players are held.
  for _, pid in ipairs(redis.call('SMEMBERS', P .. 'nodepl:' .. ME)) do
    local p = player(pid)
    if p and p.conn and p.node == ME then hold(pid, tonumber(ARGV[3])) end
  end
  redis.call('DEL', P .. 'nodepl:' .. ME)
  redis.call('ZREM', P .. 'beats', ME)
  redis.call('HDEL', P .. 'conns', ME)
  redis.call('SREM', P .. 'nodes', ME)
  redis.call('SREM', P .. 'listwatch', ME)
  return ok(true)

elseif OP == 'watch' then
  -- ARGV: '1' when this node has room-list subscribers, else '0'
  if ARGV[3] == '1' then redis.call('SADD', P .. 'listwatch', ME)
  else redis.call('SREM', P .. 'listwatch', ME) end
  return ok(true)

elseif OP == 'stats' then
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

elseif OP == 'list' then
  -- ARGV: 'w' or 'a', mode ('' any), limit
  local key = P .. 'list:' .. ARGV[3]
  if ARGV[4] ~= '' then key = key .. ':' .. ARGV[4] end
  local ids = redis.call('ZRANGE', key, 0, tonumber(ARGV[5]) - 1)
  local out = {}
  for _, id in ipairs(ids) do
    local s = redis.call('GET', P .. 'room:' .. id)
    if s then out[#out + 1] = s end
  end
  return out
end

return fail('internal', 'unknown store operation ' .. tostring(OP))
