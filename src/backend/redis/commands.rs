//! The store operation that each lobby request with fields becomes: the
//! request's defaults applied, fresh ids and codes drawn, and the limits
//! of the flags attached (the script knows nothing of either).

use super::store::ops;
use super::{attrs, codes, new_room, now, raw};
use crate::config::Config;
use crate::protocol::{
    Chat, CreateParty, CreateRoom, FindMatch, FinishGame, JoinParty, JoinRoom, Kick, ProtoError,
    QueueMatch, SetData, SetReady,
};

pub(super) fn find_match<'a>(
    cfg: &Config,
    me: &'a str,
    req: &'a FindMatch,
    rid: String,
) -> ops::FindMatch<'a> {
    let filters = req.filters.clone().unwrap_or_default();
    ops::FindMatch {
        p: me,
        attrs: attrs(&filters),
        data: raw(&filters),
        room_id: uuid::Uuid::new_v4().to_string(),
        codes: codes(),
        max_rooms: cfg.max_rooms,
        idle_ms: cfg.room_idle_timeout_ms,
        mode: req.mode.as_deref().unwrap_or("default"),
        max: req.max_players.unwrap_or(2),
        backfill: req.backfill,
        max_spectators: req.max_spectators.unwrap_or(0),
        start_when_ready: req.start_when_ready,
        rid,
        now: now(),
    }
}

pub(super) fn create_room<'a>(
    cfg: &Config,
    me: &'a str,
    req: &'a CreateRoom,
    rid: String,
) -> ops::CreateRoom<'a> {
    let data = req.data.clone().unwrap_or_default();
    ops::CreateRoom {
        p: me,
        room_id: uuid::Uuid::new_v4().to_string(),
        codes: codes(),
        private: req.private,
        mode: req.mode.as_deref().unwrap_or("default"),
        max: req.max_players.unwrap_or(2),
        data: raw(&data),
        allowed_players: &req.allowed_players,
        allowed_roles: &req.allowed_roles,
        backfill: req.backfill,
        max_spectators: req.max_spectators.unwrap_or(0),
        start_when_ready: req.start_when_ready,
        attrs: attrs(&data),
        max_rooms: cfg.max_rooms,
        idle_ms: cfg.room_idle_timeout_ms,
        rid,
        now: now(),
    }
}

pub(super) fn join_room<'a>(
    me: &'a str,
    roles: &'a [String],
    req: &'a JoinRoom,
    rid: String,
) -> ops::JoinRoom<'a> {
    let given = req.code.as_deref().unwrap_or("");
    ops::JoinRoom {
        p: me,
        room_id: req.room_id.as_deref().unwrap_or(""),
        code: given.trim().to_ascii_uppercase(),
        code_given: given,
        roles,
        spectator: req.as_spectator(),
        rid,
        now: now(),
    }
}

pub(super) fn queue_match<'a>(
    cfg: &Config,
    me: &'a str,
    req: &QueueMatch,
    rid: String,
) -> Result<ops::QueueMatch<'a>, ProtoError> {
    let spec = crate::lobby::TicketSpec::from_request(req, cfg.max_players)?;
    let pool = crate::lobby::tickets::pool_key(&spec);
    let rec = ops::TicketRec {
        mode: &spec.mode,
        max: spec.max_players,
        min: spec.min_players,
        skill: spec.skill,
        w0: spec.skill_window,
        wr: spec.skill_widen_per_s,
        wm: spec.skill_window_max,
        rg: spec.regions.iter().map(|(r, t)| (r.as_str(), *t)).collect(),
        mrt: spec.max_rtt_ms,
        bf: spec.backfill,
        fl: raw(&spec.filters),
        at: attrs(&spec.filters),
    };
    Ok(ops::QueueMatch {
        p: me,
        id: uuid::Uuid::new_v4().to_string(),
        pool,
        spec: raw(&rec),
        room: new_room(),
        max_rooms: cfg.max_rooms,
        idle_ms: cfg.room_idle_timeout_ms,
        ttl_ms: cfg.ticket_ttl_ms,
        fill_ms: cfg.ticket_fill_after_ms,
        rid,
        now: now(),
    })
}

pub(super) fn create_party<'a>(
    me: &'a str,
    req: &CreateParty,
    rid: String,
) -> Result<ops::CreateParty<'a>, ProtoError> {
    Ok(ops::CreateParty {
        p: me,
        id: uuid::Uuid::new_v4().to_string(),
        codes: codes(),
        max_size: crate::lobby::party::check_party_size(req.max_size)?,
        rid,
    })
}

pub(super) fn join_party<'a>(me: &'a str, req: &'a JoinParty, rid: String) -> ops::JoinParty<'a> {
    ops::JoinParty {
        p: me,
        code: req.code.trim().to_ascii_uppercase(),
        code_given: &req.code,
        rid,
    }
}

pub(super) fn finish_game<'a>(
    cfg: &Config,
    me: &'a str,
    req: &FinishGame,
    rid: String,
) -> ops::FinishGame<'a> {
    ops::FinishGame {
        p: me,
        result: req.result.as_ref().map(raw),
        ttl_ms: cfg.finished_room_ttl_ms,
        rid,
    }
}

pub(super) fn set_room_data<'a>(me: &'a str, req: &SetData, rid: String) -> ops::SetRoomData<'a> {
    ops::SetRoomData {
        p: me,
        data: raw(&req.data),
        attrs: attrs(&req.data),
        rid,
    }
}

pub(super) fn set_player_data<'a>(
    me: &'a str,
    req: &SetData,
    rid: String,
) -> ops::SetPlayerData<'a> {
    ops::SetPlayerData {
        p: me,
        data: raw(&req.data),
        rid,
    }
}

pub(super) fn kick<'a>(me: &'a str, req: &'a Kick, rid: String) -> ops::Kick<'a> {
    ops::Kick {
        p: me,
        target: &req.player_id,
        rid,
    }
}

pub(super) fn set_ready<'a>(me: &'a str, req: &SetReady, rid: String) -> ops::SetReady<'a> {
    ops::SetReady {
        p: me,
        ready: req.ready,
        rid,
    }
}

pub(super) fn chat<'a>(me: &'a str, req: &'a Chat, rid: String) -> ops::Chat<'a> {
    ops::Chat {
        p: me,
        text: &req.text,
        ts: now(),
        rid,
    }
}
