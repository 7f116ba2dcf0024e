//! What the engine tells the hooks: the [`HookEvent`]s of each change (only
//! recorded while webhooks are on), and the rooms that just started when
//! an allocator is asked first (their `game_start` waits for
//! [`Lobby::announce_start`]).

use uuid::Uuid;

use super::{Delivery, Lobby};
use crate::hooks::HookEvent;
use crate::protocol::{Allocation, Event, RoomStatus};

impl Lobby {
    /// Turns the recording of hook events on or off.
    pub fn record_hooks(&mut self, on: bool) {
        self.hooks = on.then(Vec::new);
    }

    /// Hook events since the last call, in the order things happened.
    pub fn take_hooks(&mut self) -> Vec<HookEvent> {
        match &mut self.hooks {
            Some(h) => std::mem::take(h),
            None => Vec::new(),
        }
    }

    /// Records an event built by `f`, when recording (built only then).
    pub(super) fn hook(&mut self, f: impl FnOnce(&Lobby) -> Option<HookEvent>) {
        if self.hooks.is_none() {
            return;
        }
        if let Some(ev) = f(self) {
            if let Some(h) = &mut self.hooks {
                h.push(ev);
            }
        }
    }

    /// The room's current object, as a hook event shows it (with `code`).
    pub(super) fn hook_room(&self, room_id: Uuid) -> Option<crate::protocol::RoomInfo> {
        self.rooms.get(&room_id).map(|r| r.info(true))
    }

    /// With `on`, a room that starts sends `room_status` at once but holds
    /// `game_start` until [`Lobby::announce_start`] (the allocator's turn).
    pub fn hold_starts(&mut self, on: bool) {
        self.hold_starts = on;
    }

    /// Rooms started (and holding their `game_start`) since the last call.
    pub fn take_starts(&mut self) -> Vec<Uuid> {
        std::mem::take(&mut self.starts)
    }

    /// Sends a held `game_start` with the allocation to the room's members
    /// as they are now; nothing if the room is gone or no longer active.
    pub fn announce_start(&mut self, room_id: Uuid, alloc: &Allocation, out: &mut Vec<Delivery>) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        if room.status != RoomStatus::Active {
            return;
        }
        super::emit(
            out,
            room.member_ids(),
            Event::game_start(room.info(true), Some(alloc)),
        );
    }
}
