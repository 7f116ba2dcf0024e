//! ICE server list and short-lived TURN credentials for players.
//!
//! Relaying media through TURN costs bandwidth, so the TURN server must only
//! serve players of this lobby, yet it should not need to know about them.
//! The "TURN REST API" scheme (coturn's `use-auth-secret`) solves this with a
//! secret shared between this server and the TURN server: we hand each player
//! a username carrying an expiry time and a credential that is an HMAC of that
//! username, and the TURN server recomputes the HMAC to check it. Nothing is
//! stored, and leaked credentials expire on their own.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

/// One entry of `RTCConfiguration.iceServers`, serialised exactly as the
/// browser API expects it so the client can pass it through untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub credential: Option<String>,
}

/// Returns `(username, credential)` for the TURN REST API scheme.
///
/// The username is `<expiry unix time>:<player_id>`; coturn rejects it once
/// that time has passed, and logs the player id, which makes relay usage
/// attributable. The credential is base64 (standard alphabet, padded) of
/// HMAC-SHA1 keyed with the shared secret over the username, which is what
/// coturn recomputes. SHA-1 is what the scheme and coturn prescribe; HMAC-SHA1
/// is not affected by SHA-1's collision weaknesses.
pub fn turn_credentials(
    secret: &str,
    player_id: &str,
    now_unix: i64,
    ttl_s: u64,
) -> (String, String) {
    // Saturate rather than overflow: an absurd clock or TTL must not panic,
    // and a far-future expiry is the obvious meaning of either.
    let ttl = i64::try_from(ttl_s).unwrap_or(i64::MAX);
    let expiry = now_unix.saturating_add(ttl);
    let username = format!("{expiry}:{player_id}");

    // HMAC accepts keys of every length (long keys are hashed first), so this
    // constructor cannot fail whatever the configured secret is.
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(username.as_bytes());
    let credential = STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}

/// Builds the ICE server list for one player.
///
/// All STUN URLs share one entry and all TURN URLs another, because browsers
/// apply an entry's credentials to every URL in it and STUN needs none.
/// Without a secret the TURN entry carries no credentials (a TURN server
/// running without authentication, e.g. on a LAN); browsers then refuse
/// `turn:` URLs, which is the operator's configuration to fix, not ours.
pub fn ice_servers(
    stun_urls: &[String],
    turn_urls: &[String],
    turn_secret: Option<&str>,
    ttl_s: u64,
    player_id: &str,
    now_unix: i64,
) -> Vec<IceServer> {
    let mut servers = Vec::with_capacity(2);
    if !stun_urls.is_empty() {
        servers.push(IceServer {
            urls: stun_urls.to_vec(),
            username: None,
            credential: None,
        });
    }
    if !turn_urls.is_empty() {
        let (username, credential) = match turn_secret {
            Some(secret) => {
                let (user, cred) = turn_credentials(secret, player_id, now_unix, ttl_s);
                (Some(user), Some(cred))
            }
            None => (None, None),
        };
        servers.push(IceServer {
            urls: turn_urls.to_vec(),
            username,
            credential,
        });
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202_test_case_2() {
        // RFC 2202 section 3, test case 2: the digest is
        // effcdf6ae5eb2fa2d27416d5f184df9c259a7c79.
        let mut mac = Hmac::<Sha1>::new_from_slice(b"Jefe").expect("any key length");
        mac.update(b"what do ya want for nothing?");
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        // Base64 of that digest, as turn_credentials would encode it.
        assert_eq!(STANDARD.encode(digest), "7/zfauXrL6LSdBbV8YTfnCWafHk=");
    }

    #[test]
    fn credentials_match_independent_python_hmac() {
        // Expected value from Python's hmac module, an independent
        // implementation computing exactly what coturn checks:
        // base64(hmac.new(b"secret", b"1732222222:p_test", hashlib.sha1).digest())
        let (username, credential) = turn_credentials("secret", "p_test", 1_732_222_000, 222);
        assert_eq!(username, "1732222222:p_test");
        assert_eq!(credential, "2myRVGDN+/MFcdiZYKxHvxxVZ2Y=");
    }

    #[test]
    fn credentials_do_not_overflow() {
        let (username, _) = turn_credentials("s", "p", i64::MAX, u64::MAX);
        assert_eq!(username, format!("{}:p", i64::MAX));
        let (username, _) = turn_credentials("", "", i64::MIN, 0);
        assert_eq!(username, format!("{}:", i64::MIN));
    }

    #[test]
    fn ice_servers_with_secret() {
        let servers = ice_servers(
            &urls(&["stun:stun.example.org:3478"]),
            &urls(&[
                "turn:turn.example.org:3478?transport=udp",
                "turns:turn.example.org:5349",
            ]),
            Some("secret"),
            222,
            "p_test",
            1_732_222_000,
        );
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, urls(&["stun:stun.example.org:3478"]));
        assert_eq!(servers[0].username, None);
        assert_eq!(servers[0].credential, None);
        assert_eq!(servers[1].urls.len(), 2);
        assert_eq!(servers[1].username.as_deref(), Some("1732222222:p_test"));
        assert_eq!(
            servers[1].credential.as_deref(),
            Some("2myRVGDN+/MFcdiZYKxHvxxVZ2Y=")
        );
    }

    #[test]
    fn ice_servers_without_secret_or_urls() {
        let servers = ice_servers(&[], &urls(&["turn:t.example.org"]), None, 60, "p", 0);
        assert_eq!(
            servers,
            vec![IceServer {
                urls: urls(&["turn:t.example.org"]),
                username: None,
                credential: None,
            }]
        );
        assert!(ice_servers(&[], &[], Some("secret"), 60, "p", 0).is_empty());
        let stun_only = ice_servers(&urls(&["stun:s.example.org"]), &[], Some("x"), 60, "p", 0);
        assert_eq!(stun_only.len(), 1);
        assert_eq!(stun_only[0].credential, None);
    }

    #[test]
    fn serialises_like_rtc_ice_server() {
        let servers = ice_servers(
            &urls(&["stun:s.example.org"]),
            &urls(&["turn:t.example.org"]),
            Some("secret"),
            222,
            "p_test",
            1_732_222_000,
        );
        let json = serde_json::to_value(&servers).expect("serialisable");
        assert_eq!(
            json,
            serde_json::json!([
                {"urls": ["stun:s.example.org"]},
                {
                    "urls": ["turn:t.example.org"],
                    "username": "1732222222:p_test",
                    "credential": "2myRVGDN+/MFcdiZYKxHvxxVZ2Y="
                }
            ])
        );
        let back: Vec<IceServer> = serde_json::from_value(json).expect("deserialisable");
        assert_eq!(back, servers);
    }
}
