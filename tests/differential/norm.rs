//! Normalization of what a server said, so two servers can be compared:
//! each server's own player ids, room ids and join codes become names
//! given by first appearance (`P<slot>`, `R<n>`, `C<n>`); resume tokens and
//! timestamps become placeholders. Ids are replaced inside every string
//! too, so error messages that quote them compare as well.

use serde_json::{Map, Value};

/// Fields that hold a time; their value is replaced by `<time>`.
const TIME_FIELDS: &[&str] = &[
    "created_at",
    "joined_at",
    "ts",
    "server_time",
    "last_seen",
    "queued_at",
];

#[derive(Default)]
pub struct Norm {
    /// (real id, name), in order of first appearance.
    players: Vec<(String, String)>,
    pub rooms: Vec<String>,
    pub codes: Vec<String>,
    /// `queue_match` ticket ids, named `T<n>`.
    pub tickets: Vec<String>,
    /// Party ids, named `Y<n>` (their codes join the room codes).
    pub parties: Vec<String>,
}

impl Norm {
    /// Names a player id (from a `welcome`), unless it has a name already.
    pub fn add_player(&mut self, id: &str, name: String) -> bool {
        if id.is_empty() || self.players.iter().any(|(p, _)| p == id) {
            return false;
        }
        self.players.push((id.to_string(), name));
        true
    }

    pub fn player_name(&self, id: &str) -> Option<&str> {
        self.players
            .iter()
            .find(|(p, _)| p == id)
            .map(|(_, n)| n.as_str())
    }

    /// Learns the room ids and codes in `v` (in a fixed walk order), then
    /// returns it normalized.
    pub fn normalize(&mut self, v: &Value) -> Value {
        self.learn(v);
        self.rewrite(v)
    }

    fn learn(&mut self, v: &Value) {
        match v {
            Value::Object(m) => {
                // A room object or an event about a room: its id, and its
                // code when shown.
                if let Some(Value::String(id)) = m.get("room_id") {
                    if uuid::Uuid::parse_str(id).is_ok() && !self.rooms.contains(id) {
                        self.rooms.push(id.clone());
                    }
                    if let Some(Value::String(code)) = m.get("code") {
                        if !self.codes.contains(code) {
                            self.codes.push(code.clone());
                        }
                    }
                }
                if let Some(Value::String(id)) = m.get("party_id") {
                    if !self.parties.contains(id) {
                        self.parties.push(id.clone());
                    }
                    if let Some(Value::String(code)) = m.get("code") {
                        if !self.codes.contains(code) {
                            self.codes.push(code.clone());
                        }
                    }
                }
                if let Some(Value::String(id)) = m.get("ticket_id") {
                    if !self.tickets.contains(id) {
                        self.tickets.push(id.clone());
                    }
                }
                for v in m.values() {
                    self.learn(v);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| self.learn(v)),
            _ => {}
        }
    }

    fn rewrite(&self, v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    let v = match (k.as_str(), v) {
                        ("uptime_s", _) => continue,
                        ("resume_token", Value::String(_)) => Value::String("<token>".into()),
                        (k, Value::String(_)) if TIME_FIELDS.contains(&k) => {
                            Value::String("<time>".into())
                        }
                        _ => self.rewrite(v),
                    };
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| self.rewrite(v)).collect()),
            Value::String(s) => Value::String(self.rewrite_str(s)),
            other => other.clone(),
        }
    }

    fn rewrite_str(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (id, name) in &self.players {
            if s.contains(id.as_str()) {
                s = s.replace(id.as_str(), name);
            }
        }
        for (i, id) in self.rooms.iter().enumerate() {
            if s.contains(id.as_str()) {
                s = s.replace(id.as_str(), &format!("R{i}"));
            }
        }
        for (i, id) in self.parties.iter().enumerate() {
            if s.contains(id.as_str()) {
                s = s.replace(id.as_str(), &format!("Y{i}"));
            }
        }
        for (i, id) in self.tickets.iter().enumerate() {
            if s.contains(id.as_str()) {
                s = s.replace(id.as_str(), &format!("T{i}"));
            }
        }
        for (i, code) in self.codes.iter().enumerate() {
            if s.contains(code.as_str()) {
                s = s.replace(code.as_str(), &format!("C{i}"));
            }
            // Steps also send codes in lower case (join_room normalizes
            // them); a refusal quotes the code as sent.
            let lower = code.to_ascii_lowercase();
            if s.contains(lower.as_str()) {
                s = s.replace(lower.as_str(), &format!("c{i}"));
            }
        }
        s
    }
}

/// Two normalized records side by side, lines aligned by a longest common
/// subsequence, `!` marking lines present on one side only.
pub fn side_by_side(left: &Value, right: &Value) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let (l, r) = (pretty(left), pretty(right));
    let (l, r): (Vec<&str>, Vec<&str>) = (l.lines().collect(), r.lines().collect());
    // lcs[i][j]: length of the LCS of l[i..] and r[j..].
    let mut lcs = vec![vec![0u32; r.len() + 1]; l.len() + 1];
    for i in (0..l.len()).rev() {
        for j in (0..r.len()).rev() {
            lcs[i][j] = if l[i] == r[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let width = l
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .min(80);
    let cut = |s: &str| s.chars().take(80).collect::<String>();
    let mut out = format!("  {:width$} | cluster (redis)\n", "in memory");
    let (mut i, mut j) = (0, 0);
    while i < l.len() || j < r.len() {
        if i < l.len() && j < r.len() && l[i] == r[j] {
            out.push_str(&format!("  {:width$} | {}\n", cut(l[i]), r[j]));
            i += 1;
            j += 1;
        } else if j < r.len() && (i == l.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("! {:width$} | {}\n", "", r[j]));
            j += 1;
        } else {
            out.push_str(&format!("! {:width$} |\n", cut(l[i])));
            i += 1;
        }
    }
    out
}
