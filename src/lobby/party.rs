//! Parties (1.1): a group that queues and plays together. Created with a
//! join code, joined by it, left; the first member in join order leads.
//! The leader's `queue_match` queues one ticket for every member and its
//! `find_match` seats them all in one room (see `queue.rs`, `seats.rs`).
//!
//! A party's ticket (its leader's) holds the members it had when it was
//! queued: when the membership changes, that ticket is cancelled
//! (`ticket_cancelled`), so a party never plays with someone who left or
//! without someone who joined.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::{emit, err, Delivery, Lobby};
use crate::protocol::{ErrorCode, Event, PartyInfo, PartyMember, ProtoError};

/// Largest and default `max_size` of a party.
pub const MAX_PARTY_SIZE: u64 = 16;
pub const DEFAULT_PARTY_SIZE: u64 = 4;

#[derive(Debug, Clone)]
pub struct Party {
    pub id: String,
    pub code: String,
    /// Join order; the first one leads.
    pub members: Vec<String>,
    pub max_size: u64,
}

/// `create_party`'s `max_size` (2 to 16, default 4).
pub fn check_party_size(n: Option<u64>) -> Result<u64, ProtoError> {
    let n = n.unwrap_or(DEFAULT_PARTY_SIZE);
    if !(2..=MAX_PARTY_SIZE).contains(&n) {
        return Err(ProtoError::bad_request(format!(
            "max_size must be 2 to {MAX_PARTY_SIZE}, got {n}"
        )));
    }
    Ok(n)
}

impl Lobby {
    pub fn create_party(
        &mut self,
        player_id: &str,
        max_size: Option<u64>,
    ) -> Result<PartyInfo, ProtoError> {
        let max_size = check_party_size(max_size)?;
        self.check_no_party(player_id)?;
        let id = Uuid::new_v4().to_string();
        let code = loop {
            let c = super::new_code_text();
            if !self.party_codes.contains_key(&c) {
                break c;
            }
        };
        self.party_codes.insert(code.clone(), id.clone());
        self.parties.insert(
            id.clone(),
            Party {
                id: id.clone(),
                code,
                members: vec![player_id.to_string()],
                max_size,
            },
        );
        if let Some(p) = self.players.get_mut(player_id) {
            p.party = Some(id.clone());
        }
        Ok(self.party_info(&id).expect("just made"))
    }

    pub fn join_party(
        &mut self,
        player_id: &str,
        code: &str,
        out: &mut Vec<Delivery>,
    ) -> Result<PartyInfo, ProtoError> {
        self.check_no_party(player_id)?;
        let wanted = code.trim().to_ascii_uppercase();
        let Some(id) = self.party_codes.get(&wanted).cloned() else {
            return Err(err(
                ErrorCode::PartyNotFound,
                format!("no party with code {code:?}"),
            ));
        };
        let party = &self.parties[&id];
        if party.members.len() as u64 >= party.max_size {
            return Err(err(
                ErrorCode::PartyFull,
                format!(
                    "the party has {} of {} members",
                    party.members.len(),
                    party.max_size
                ),
            ));
        }
        self.cancel_party_ticket(&id, player_id, out);
        if let Some(party) = self.parties.get_mut(&id) {
            party.members.push(player_id.to_string());
        }
        if let Some(p) = self.players.get_mut(player_id) {
            p.party = Some(id.clone());
        }
        self.party_changed(&id, Some(player_id), out);
        Ok(self.party_info(&id).expect("joined"))
    }

    pub fn leave_party(
        &mut self,
        player_id: &str,
        out: &mut Vec<Delivery>,
    ) -> Result<(), ProtoError> {
        if self.party_of(player_id).is_none() {
            return Err(err(ErrorCode::NotInParty, "you are not in a party"));
        }
        self.drop_from_party(player_id, out);
        Ok(())
    }

    /// Takes the player out of its party (leave, or forgotten): its
    /// ticket with the party is cancelled, the others learn it, the next
    /// member leads; the last one out ends the party.
    pub(super) fn drop_from_party(&mut self, player_id: &str, out: &mut Vec<Delivery>) {
        let Some(id) = self.players.get_mut(player_id).and_then(|p| p.party.take()) else {
            return;
        };
        self.cancel_party_ticket(&id, player_id, out);
        let Some(party) = self.parties.get_mut(&id) else {
            return;
        };
        party.members.retain(|m| m != player_id);
        if party.members.is_empty() {
            let code = party.code.clone();
            self.parties.remove(&id);
            self.party_codes.remove(&code);
            return;
        }
        self.party_changed(&id, None, out);
    }

    /// The party's ticket (its leader's: a leader only ever queues the
    /// whole party) leaves the queue: the membership is about to change.
    /// Its players other than `by` get `ticket_cancelled`.
    fn cancel_party_ticket(&mut self, party_id: &str, by: &str, out: &mut Vec<Delivery>) {
        let Some(party) = self.parties.get(party_id) else {
            return;
        };
        let ticket = self
            .tickets
            .ticket_of(&party.members[0])
            .map(|t| t.id.clone());
        if let Some(t) = ticket.and_then(|id| self.drop_ticket(&id)) {
            emit(
                out,
                t.players.into_iter().filter(|p| p != by).collect(),
                Event::TicketCancelled { ticket_id: t.id },
            );
        }
    }

    /// `party_updated` to every member but `except`.
    pub(super) fn party_changed(
        &mut self,
        party_id: &str,
        except: Option<&str>,
        out: &mut Vec<Delivery>,
    ) {
        let Some(info) = self.party_info(party_id) else {
            return;
        };
        let to = self.parties[party_id]
            .members
            .iter()
            .filter(|m| Some(m.as_str()) != except)
            .cloned()
            .collect();
        emit(out, to, Event::PartyUpdated { party: info });
    }

    /// A member's connection dropped or came back: the others see it.
    pub(super) fn party_presence(&mut self, player_id: &str, out: &mut Vec<Delivery>) {
        if let Some(id) = self.players.get(player_id).and_then(|p| p.party.clone()) {
            self.party_changed(&id, Some(player_id), out);
        }
    }

    /// `player_id` is a known player outside any party. (Sessions only
    /// ask for players they registered; a forgotten one must not become a
    /// member that has no player.)
    fn check_no_party(&self, player_id: &str) -> Result<(), ProtoError> {
        if !self.players.contains_key(player_id) {
            return Err(err(ErrorCode::Internal, "unknown player"));
        }
        if self.party_of(player_id).is_some() {
            return Err(err(
                ErrorCode::AlreadyInParty,
                "you are already in a party; leave it first",
            ));
        }
        Ok(())
    }

    pub fn party_of(&self, player_id: &str) -> Option<&Party> {
        let id = self.players.get(player_id)?.party.as_ref()?;
        self.parties.get(id)
    }

    /// The players a request of `player_id` moves together: the party's
    /// members when it leads a party (alone in it, that is itself), itself
    /// alone outside a party; `not_party_leader` for another member.
    pub(super) fn group_of(&self, player_id: &str) -> Result<Vec<String>, ProtoError> {
        match self.party_of(player_id) {
            Some(p) if p.members[0] != player_id => Err(err(
                ErrorCode::NotPartyLeader,
                "only the party's leader can do that for the party",
            )),
            Some(p) => Ok(p.members.clone()),
            None => Ok(vec![player_id.to_string()]),
        }
    }

    pub fn party_info(&self, party_id: &str) -> Option<PartyInfo> {
        let party = self.parties.get(party_id)?;
        Some(PartyInfo {
            party_id: party.id.clone(),
            code: party.code.clone(),
            leader: party.members[0].clone(),
            members: party
                .members
                .iter()
                .map(|m| {
                    let p = self.players.get(m);
                    PartyMember {
                        player_id: m.clone(),
                        name: p.map(|p| p.name.clone()).unwrap_or_default(),
                        connected: p.is_some_and(|p| p.connected),
                    }
                })
                .collect(),
            max_size: party.max_size,
        })
    }

    pub fn parties(&self) -> usize {
        self.parties.len()
    }

    /// Every party non-empty, within its size, its code indexed, its
    /// members known, pointing back at it and in no other party.
    pub(super) fn check_parties(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for (id, party) in &self.parties {
            if party.members.is_empty() || party.members.len() as u64 > party.max_size {
                return Err(format!("party {id} has {} members", party.members.len()));
            }
            if self.party_codes.get(&party.code) != Some(id) {
                return Err(format!("party {id} code not indexed"));
            }
            for m in &party.members {
                if !seen.insert(m.clone()) {
                    return Err(format!("{m} is in two parties"));
                }
                if self.players.get(m).and_then(|p| p.party.as_ref()) != Some(id) {
                    return Err(format!("{m} disagrees with party {id}"));
                }
            }
        }
        if self.party_codes.len() != self.parties.len() {
            return Err("party codes and parties differ".into());
        }
        for (pid, p) in &self.players {
            if let Some(id) = &p.party {
                if !self.parties.contains_key(id) {
                    return Err(format!("{pid} points at party {id} that is gone"));
                }
            }
        }
        Ok(())
    }
}
