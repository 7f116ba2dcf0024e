//! Where a signal goes, learned from notices: the rooms of this node's
//! players, with each member's node, so relaying a signal needs no script.
//!
//! Every change of a room reaches the nodes of its connected members with a
//! snapshot of the room, in the store's order; that is all this table
//! reads. The sender's node uses it as a hint: a target that it shows as a
//! connected member of the sender's room gets the signal by one `PUBLISH`
//! to its node's channel; anything else (no room known, a held seat, a
//! stranger) takes the script, which gives the exact refusal or keeps the
//! signal for a held seat. The target's node checks again on arrival, with
//! its own view (fresh for its own players, since it gets every change of
//! their rooms in order), so a hint that went stale in the moment of a
//! leave or kick can never deliver outside a room: such a signal is
//! dropped, as if it had been sent just after the change.

// foldhash, not SipHash: every routed and every received signal looks up
// two players and a room here (SipHash was 1.7% of a cluster run in perf).
use foldhash::HashMap;

use crate::backend::redis::store::notice::RoomRec;

/// A member of a room: id, node, connected, and whether it only watches
/// (spectators signal players, not each other).
type Member = (String, String, bool, bool);

/// A room as this node last saw it.
#[derive(Default)]
struct RoomRoute {
    /// Every member: seats and spectators.
    seats: Vec<Member>,
    /// Members connected here.
    locals: Vec<String>,
}

#[derive(Default)]
pub(crate) struct Routes {
    /// The room of each player connected here that is in one.
    room_of: HashMap<String, String>,
    rooms: HashMap<String, RoomRoute>,
}

impl Routes {
    /// Takes in a room snapshot (`me`: this node's id).
    pub fn learn(&mut self, room: &RoomRec, me: &str) {
        let seats: Vec<Member> = room
            .pl
            .iter()
            .map(|s| (s.id.clone(), s.n.clone(), s.c, false))
            .chain(
                room.sp
                    .iter()
                    .map(|s| (s.id.clone(), s.n.clone(), s.c, true)),
            )
            .collect();
        let here: Vec<String> = seats
            .iter()
            .filter(|(_, node, c, _)| *c && node == me)
            .map(|(id, _, _, _)| id.clone())
            .collect();
        let before = self
            .rooms
            .get(&room.id)
            .map(|r| r.locals.clone())
            .unwrap_or_default();
        for pid in before.iter().filter(|p| !here.contains(p)) {
            if self.room_of.get(pid) == Some(&room.id) {
                self.room_of.remove(pid);
            }
        }
        for pid in &here {
            if let Some(old) = self.room_of.insert(pid.clone(), room.id.clone()) {
                if old != room.id {
                    self.drop_local(&old, pid);
                }
            }
        }
        if here.is_empty() {
            self.rooms.remove(&room.id);
        } else {
            self.rooms.insert(
                room.id.clone(),
                RoomRoute {
                    seats,
                    locals: here,
                },
            );
        }
    }

    /// A player here is out of its room (left it, was kicked, its
    /// connection ended for good).
    pub fn forget(&mut self, pid: &str) {
        if let Some(room) = self.room_of.remove(pid) {
            self.drop_local(&room, pid);
        }
    }

    /// `forget`, only when the player's known room is `room`.
    pub fn forget_in(&mut self, pid: &str, room: &str) {
        if self.room_of.get(pid).is_some_and(|r| r == room) {
            self.forget(pid);
        }
    }

    fn drop_local(&mut self, room: &str, pid: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.locals.retain(|p| p != pid);
            if r.locals.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    /// The sender's room and the target's node, when the target is a
    /// connected member of the sender's room other than the sender.
    pub fn route(&self, from: &str, to: &str) -> Option<(&str, &str)> {
        let room = self.room_of.get(from)?;
        if from == to {
            return None;
        }
        let r = self.rooms.get(room)?;
        let watches = |who: &str| r.seats.iter().any(|(id, _, _, w)| *w && id == who);
        if watches(from) && watches(to) {
            return None; // refused by the script, with its reason
        }
        r.seats
            .iter()
            .find(|(id, _, c, _)| *c && id == to)
            .map(|(_, node, _, _)| (room.as_str(), node.as_str()))
    }

    /// Where a `send` (1.2) from `from` goes: the sender's room and each
    /// recipient's `(node, id)`, when this node can tell alone: the room is
    /// known, every recipient is a connected member, and a `to` comes from
    /// a seated player and names another member. Anything else (a held
    /// recipient, a refusal to give, an empty room) takes the script.
    pub fn message_route(
        &self,
        from: &str,
        to: Option<&str>,
    ) -> Option<(&str, Vec<(String, String)>)> {
        let room = self.room_of.get(from)?;
        let r = self.rooms.get(room)?;
        let out: Vec<(String, String)> = match to {
            Some(to) => {
                let seated = r.seats.iter().any(|(id, _, _, w)| !*w && id == from);
                if !seated || to == from {
                    return None;
                }
                let (_, node, c, _) = r.seats.iter().find(|(id, _, _, _)| id == to)?;
                if !*c {
                    return None;
                }
                vec![(node.clone(), to.to_string())]
            }
            None => {
                let mut out = Vec::with_capacity(r.seats.len());
                for (id, node, c, _) in r.seats.iter().filter(|m| m.0 != from) {
                    if !*c {
                        return None;
                    }
                    out.push((node.clone(), id.clone()));
                }
                out
            }
        };
        (!out.is_empty()).then_some((room.as_str(), out))
    }

    /// The target's node's check of a `send` message: `to` is here in
    /// `room`, and `from` is a member of it (the sender's node checked the
    /// rest).
    pub fn admits_message(&self, from: &str, to: &str, room: &str) -> bool {
        if self.room_of.get(to).is_none_or(|r| r != room) {
            return false;
        }
        self.rooms
            .get(room)
            .is_some_and(|r| r.seats.iter().any(|m| m.0 == from))
    }

    /// The target's node's check: `to` is here in `room`, and `from` is a
    /// member of it.
    pub fn admits(&self, from: &str, to: &str, room: &str) -> bool {
        if self.room_of.get(to).is_none_or(|r| r != room) {
            return false;
        }
        let Some(r) = self.rooms.get(room) else {
            return false;
        };
        let kind = |who: &str| r.seats.iter().find(|m| m.0 == who).map(|m| m.3);
        match (kind(from), kind(to)) {
            (Some(from_watches), Some(to_watches)) => !(from_watches && to_watches),
            _ => false,
        }
    }

    /// Forgets everything (the store's state was lost or cut off).
    pub fn clear(&mut self) {
        self.room_of.clear();
        self.rooms.clear();
    }

    /// Entries kept, for "nothing left behind" checks.
    pub fn len(&self) -> usize {
        self.room_of.len() + self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str, seats: &[(&str, &str, bool)]) -> RoomRec {
        let pl: Vec<serde_json::Value> = seats
            .iter()
            .map(|(p, n, c)| serde_json::json!({"id": p, "nm": p, "dt": "{}", "ja": "", "c": c, "n": n}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "id": id, "code": "", "mode": "", "max": 4, "st": "waiting", "ca": "",
            "data": "{}", "pl": pl, "chat": []
        }))
        .unwrap()
    }

    #[test]
    fn routes_follow_the_snapshots() {
        let mut r = Routes::default();
        r.learn(
            &room(
                "r1",
                &[("a", "n1", true), ("b", "n2", true), ("c", "n2", false)],
            ),
            "n1",
        );
        assert_eq!(r.route("a", "b"), Some(("r1", "n2")));
        assert_eq!(r.route("a", "c"), None, "a held seat takes the script");
        assert_eq!(r.route("a", "a"), None);
        assert_eq!(r.route("a", "x"), None);
        assert_eq!(r.route("b", "a"), None, "only players here route");
        assert!(r.admits("b", "a", "r1"));
        assert!(!r.admits("x", "a", "r1"));
        // A send to everyone routes only when no one is held.
        assert_eq!(r.message_route("a", None), None, "c is held");
        let to_b = r.message_route("a", Some("b")).unwrap();
        assert_eq!(to_b, ("r1", vec![("n2".to_string(), "b".to_string())]));
        assert_eq!(r.message_route("a", Some("c")), None);
        assert_eq!(r.message_route("a", Some("a")), None);
        assert!(r.admits_message("b", "a", "r1"));
        assert!(!r.admits_message("x", "a", "r1"));
        // b moves to n3 (a takeover), then leaves.
        r.learn(&room("r1", &[("a", "n1", true), ("b", "n3", true)]), "n1");
        assert_eq!(r.route("a", "b"), Some(("r1", "n3")));
        let all = r.message_route("a", None).unwrap();
        assert_eq!(all, ("r1", vec![("n3".to_string(), "b".to_string())]));
        r.learn(&room("r1", &[("a", "n1", true)]), "n1");
        assert_eq!(r.route("a", "b"), None);
        assert!(!r.admits("b", "a", "r1"));
        // a leaves: nothing is left behind.
        r.learn(&room("r1", &[]), "n1");
        assert_eq!(r.len(), 0);
        // a joins r2 without r1's last snapshot (kicked): r1 goes.
        r.learn(&room("r1", &[("a", "n1", true), ("b", "n2", true)]), "n1");
        r.learn(&room("r2", &[("a", "n1", true)]), "n1");
        assert_eq!(r.route("a", "b"), None);
        assert_eq!(r.len(), 2);
        r.forget("a");
        assert_eq!(r.len(), 0);
    }
}
