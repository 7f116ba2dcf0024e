//! Token authentication for WebSocket connections. Game backends mint a JWT
//! for each player and the client passes it as `token=` when it connects;
//! this module turns that string into a verified [`Identity`] (or a reason to
//! refuse it) so the rest of the server never handles raw tokens. Tokens come
//! from untrusted clients, so every path here returns an error instead of
//! panicking, and no error message ever repeats any part of the token.
//!
//! Policy (see `--auth`): with [`AuthMode::Required`] a valid token is
//! needed; with [`AuthMode::Optional`] a connection without one is anonymous
//! but a token that is sent must be valid; with [`AuthMode::Off`] tokens are
//! ignored. Keys are HS256 shared secrets or RS256/ES256 (P-256) public keys
//! in PEM; exactly one algorithm is accepted, the one the configured key is
//! for, which rules out `alg: none` and HS256-with-the-public-key confusion.

use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Longest token accepted, in bytes. Real tokens are a few hundred bytes;
/// the cap bounds the base64 and JSON work a hostile client can ask for.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest `sub`, in characters.
pub const MAX_SUB_CHARS: usize = 64;
/// Longest `name` kept, in characters after trimming; same rule as the
/// `name` query parameter, so a token name can stand in for it.
pub const MAX_NAME_CHARS: usize = 32;
/// Most roles one token may carry.
pub const MAX_ROLES: usize = 32;
/// Longest role, in characters.
pub const MAX_ROLE_CHARS: usize = 64;
/// Largest accepted clock-skew leeway. jsonwebtoken computes `now - leeway`
/// without checking, so an absurd value must be refused here rather than
/// overflow there; a day is far beyond any real clock skew.
pub const MAX_LEEWAY_S: u64 = 86_400;
/// RSA moduli below this size are refused at startup: they can be factored.
const MIN_RSA_BITS: usize = 2048;
const BOTH_KEYS: &str =
    "set either a JWT secret (HS256) or a JWT public key (RS256/ES256), not both";
const NO_KEY: &str = "auth is on but neither a JWT secret nor a JWT public key is configured";

/// How the server treats the `token` connection parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthMode {
    /// No authentication: tokens are ignored, even invalid ones.
    #[default]
    Off,
    /// Anonymous connections allowed; a token that is sent must be valid.
    Optional,
    /// Every connection needs a valid token.
    Required,
}

/// Verified identity from a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim: 1 to 64 characters, no whitespace, control or
    /// invisible formatting characters.
    pub sub: String,
    /// The `name` claim, trimmed; `None` when absent or unusable (not a
    /// string, blank, over 32 characters or with control characters). A bad
    /// name does not make the token invalid: the server falls back to the
    /// `name` query parameter, as it would for a token without a name.
    pub name: Option<String>,
    /// The `roles` claim (empty when absent), in token order.
    pub roles: Vec<String>,
}

/// Why a token was refused or the auth settings are unusable.
///
/// Messages are written for people and never contain token text: they may
/// be sent back to the client or logged. `Missing`, `Expired` and `Invalid`
/// are the client's fault; the others are configuration problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, and this server requires one.
    #[error("this server requires a token (connect with token=<JWT>)")]
    Missing,
    /// The token's `exp` is past (beyond the configured leeway).
    #[error("the token has expired")]
    Expired,
    /// The token is malformed, badly signed, or its claims are unacceptable.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// `verify` was called but no key is configured.
    #[error("token verification is not configured on this server")]
    NotConfigured,
    /// The auth settings contradict each other or lack something.
    #[error("auth configuration: {0}")]
    Config(&'static str),
    /// The configured public key cannot be used.
    #[error("JWT public key: {0}")]
    BadKey(String),
}

/// Auth configuration, as read from the command line or environment.
#[derive(Clone, Default)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// Shared secret for HS256.
    pub jwt_secret: Option<String>,
    /// PEM contents of an RSA or EC P-256 public key (RS256 / ES256).
    pub jwt_public_key_pem: Option<Vec<u8>>,
    /// Required `aud` value; when `None`, `aud` is not checked at all.
    pub audience: Option<String>,
    /// Required `iss` value; when `None`, `iss` is not checked.
    pub issuer: Option<String>,
    /// Clock-skew allowance for `exp` and `nbf`, at most [`MAX_LEEWAY_S`].
    pub leeway_s: u64,
}

// Hand-written so that the secret never reaches a log through `{:?}`.
impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("mode", &self.mode)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "jwt_public_key_pem",
                &self.jwt_public_key_pem.as_ref().map(|_| "<pem>"),
            )
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("leeway_s", &self.leeway_s)
            .finish()
    }
}

/// Key and validation rules fixed at startup.
#[derive(Clone)]
struct Verifier {
    alg: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

/// Checks connection tokens against the configured key and policy. Cheap to
/// clone; build it once at startup with [`Authenticator::new`].
#[derive(Clone)]
pub struct Authenticator {
    mode: AuthMode,
    verifier: Option<Verifier>,
}

// Hand-written: `DecodingKey` holds the HS256 secret.
impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds from settings. Errors when the mode is not `Off` and no key is
    /// configured, when both a secret and a public key are set, when the
    /// secret is empty, when the PEM is not a usable RSA (2048 bits or more)
    /// or EC P-256 public key, or when the leeway exceeds [`MAX_LEEWAY_S`].
    /// Keys are checked even with `Off`, so a mistake is caught before
    /// someone turns auth on. Meant for startup: report the error and exit.
    pub fn new(s: AuthSettings) -> Result<Authenticator, AuthError> {
        if s.leeway_s > MAX_LEEWAY_S {
            return Err(AuthError::Config("the JWT leeway may be at most 86400 s"));
        }
        let secret = s.jwt_secret.as_deref();
        let pem = s.jwt_public_key_pem.as_deref();
        let (alg, key) = match (secret, pem) {
            (Some(_), Some(_)) => return Err(AuthError::Config(BOTH_KEYS)),
            (Some(secret), None) if secret.trim().is_empty() => {
                return Err(AuthError::Config("the JWT secret is empty"))
            }
            (Some(secret), None) => (
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
            ),
            (None, Some(pem)) => load_public_key(pem)?,
            (None, None) if s.mode == AuthMode::Off => {
                return Ok(Authenticator {
                    mode: s.mode,
                    verifier: None,
                })
            }
            (None, None) => return Err(AuthError::Config(NO_KEY)),
        };

        let mut validation = Validation::new(alg);
        validation.leeway = s.leeway_s;
        validation.validate_exp = true;
        // jsonwebtoken skips `nbf` unless asked; a token that is not valid yet
        // must not be accepted.
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match &s.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                // Without this a token with no `aud` at all would pass.
                required.push("aud");
            }
            // Nothing to compare against: without this jsonwebtoken would
            // refuse every token that carries an `aud`.
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &s.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);

        Ok(Authenticator {
            mode: s.mode,
            verifier: Some(Verifier {
                alg,
                key,
                validation,
            }),
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The one algorithm tokens must use ("HS256", "RS256" or "ES256"), or
    /// `None` without a key; for the startup log.
    pub fn algorithm(&self) -> Option<&'static str> {
        self.verifier.as_ref().map(|v| match v.alg {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            _ => "HS256",
        })
    }

    /// Applies the connection policy to the `token` parameter and returns
    /// `Ok(None)` for an anonymous connection:
    /// - `Required`: a token is needed and must verify.
    /// - `Optional`: no token means anonymous; a token sent must verify.
    /// - `Off`: always anonymous, whatever is sent. A server without auth
    ///   may have no key to verify against, and refusing clients that happen
    ///   to send a token would break them for no gain.
    ///
    /// An empty token (`token=`) counts as no token, since clients commonly
    /// send the parameter empty when they have nothing to put in it.
    pub fn check(&self, token: Option<&str>) -> Result<Option<Identity>, AuthError> {
        let token = token.filter(|t| !t.is_empty());
        match (self.mode, token) {
            (AuthMode::Off, _) | (AuthMode::Optional, None) => Ok(None),
            (AuthMode::Required, None) => Err(AuthError::Missing),
            (AuthMode::Optional | AuthMode::Required, Some(t)) => self.verify(t).map(Some),
        }
    }

    /// Verifies one token, whatever the mode: signature with the configured
    /// key and its single algorithm (HS256 for a secret, RS256 for an RSA key,
    /// ES256 for an EC key); `exp` required and enforced and `nbf` honoured,
    /// both with the leeway; `aud` and `iss` required and matched when
    /// configured; then the claims described on [`Identity`]. A `roles` claim
    /// that is not a list of at most 32 strings of 1 to 64 characters (no
    /// whitespace or control characters) makes the token invalid; `"roles":
    /// null` and `"name": null` count as absent.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let v = self.verifier.as_ref().ok_or(AuthError::NotConfigured)?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid("token too long"));
        }
        // Checked before the signature so the client is told the real problem
        // ("none", or a token for another key type) instead of "malformed".
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed token or unsupported algorithm"))?;
        if header.alg != v.alg {
            return Err(AuthError::Invalid("algorithm not accepted by this server"));
        }
        // RFC 7515 §4.1.11: a token relying on extensions we do not
        // implement must be refused.
        if header.crit.is_some() {
            return Err(AuthError::Invalid("unsupported critical header"));
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &v.key, &v.validation)
            .map_err(|e| map_jwt_error(e.kind()))?;
        identity_from_claims(&data.claims)
    }
}

/// Signs `claims` with HS256 and `secret`. For tests and tools (the server's
/// integration tests, minting a token by hand); the server never signs.
///
/// # Panics
///
/// Never in practice: HMAC takes keys of any length and a JSON value always
/// serializes, so jsonwebtoken has no error to report here.
pub fn sign_hs256_for_tests(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing of a JSON value cannot fail")
}

/// Parses the PEM as an RSA or EC P-256 public key and checks that it can
/// really verify, because jsonwebtoken defers most key parsing to the first
/// verification: a bad key would otherwise surface as every token failing.
fn load_public_key(pem: &[u8]) -> Result<(Algorithm, DecodingKey), AuthError> {
    let text = String::from_utf8_lossy(pem);
    // jsonwebtoken accepts some of these and then fails in obscure ways;
    // name the likely mistake instead.
    if text.contains("PRIVATE KEY-----") {
        return Err(AuthError::BadKey(
            "this is a private key; configure the public key \
             (openssl pkey -in private.pem -pubout)"
                .into(),
        ));
    }
    if text.contains("CERTIFICATE-----") {
        return Err(AuthError::BadKey(
            "certificates are not supported; extract the public key \
             (openssl x509 -in cert.pem -pubkey -noout)"
                .into(),
        ));
    }

    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        // Parsing the modulus is the check jsonwebtoken would otherwise only
        // do at the first verification.
        let jwk = Jwk::from_decoding_key(&key, Some(Algorithm::RS256)).map_err(|e| {
            AuthError::BadKey(format!(
                "unusable RSA public key (2048 to 4096 bits supported): {e}"
            ))
        })?;
        let bits = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(p) => base64url_decoded_len(&p.n) * 8,
            _ => 0,
        };
        if bits < MIN_RSA_BITS {
            return Err(AuthError::BadKey(format!(
                "RSA keys need at least {MIN_RSA_BITS} bits"
            )));
        }
        return Ok((Algorithm::RS256, key));
    }

    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // Building an ES256 verifier parses the point on P-256; the empty
        // signature then simply fails to verify. An error means another
        // curve or a broken key.
        return match jsonwebtoken::crypto::verify("", b"probe", &key, Algorithm::ES256) {
            Ok(_) => Ok((Algorithm::ES256, key)),
            Err(_) => Err(AuthError::BadKey(
                "EC keys must be on P-256 (prime256v1) for ES256".into(),
            )),
        };
    }

    Err(AuthError::BadKey(
        "not an RSA or EC P-256 public key in PEM (-----BEGIN PUBLIC KEY-----)".into(),
    ))
}

/// Bytes encoded by unpadded base64url text. The modulus is big-endian with
/// no leading zero byte, so bytes × 8 is its size to within 7 bits; good
/// enough for a minimum-size check against keys that come in round sizes.
fn base64url_decoded_len(s: &str) -> usize {
    s.trim_end_matches('=').len() * 3 / 4
}

/// Maps jsonwebtoken's errors to fixed messages: its own messages can quote
/// JSON from the token (serde errors), which must not reach logs or clients.
fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    AuthError::Invalid(match kind {
        ErrorKind::ExpiredSignature => return AuthError::Expired,
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
            // jsonwebtoken also reports an unparsable `exp` (negative, a
            // string) as missing.
            "exp" => "exp claim missing or not a valid time",
            "aud" => "missing aud claim",
            "iss" => "missing iss claim",
            _ => "missing required claim",
        },
        ErrorKind::InvalidClaimFormat(_) => "exp or nbf is not a number",
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => "algorithm not accepted by this server",
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => "malformed token",
        _ => "token could not be verified",
    })
}

/// Turns verified claims into an [`Identity`], enforcing the rules on `sub`,
/// `name` and `roles` that jsonwebtoken knows nothing about.
fn identity_from_claims(claims: &Map<String, Value>) -> Result<Identity, AuthError> {
    let sub = match claims.get("sub") {
        None | Some(Value::Null) => return Err(AuthError::Invalid("missing sub claim")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(AuthError::Invalid("sub is not a string")),
    };
    if sub.is_empty() {
        return Err(AuthError::Invalid("empty sub"));
    }
    if sub.chars().count() > MAX_SUB_CHARS {
        return Err(AuthError::Invalid("sub longer than 64 characters"));
    }
    if !is_printable_token(sub) {
        return Err(AuthError::Invalid(
            "sub has whitespace or control characters",
        ));
    }

    // Invalid names are dropped rather than refused (see `Identity::name`).
    let name = match claims.get("name") {
        Some(Value::String(n)) => {
            let n = n.trim();
            let len = n.chars().count();
            let ok = (1..=MAX_NAME_CHARS).contains(&len) && !n.chars().any(char::is_control);
            ok.then(|| n.to_owned())
        }
        _ => None,
    };

    let roles = match claims.get("roles") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > MAX_ROLES {
                return Err(AuthError::Invalid("more than 32 roles"));
            }
            let mut roles = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(role) = item else {
                    return Err(AuthError::Invalid("roles must be strings"));
                };
                let len = role.chars().count();
                if !(1..=MAX_ROLE_CHARS).contains(&len) || !is_printable_token(role) {
                    return Err(AuthError::Invalid(
                        "roles must be 1 to 64 characters without whitespace",
                    ));
                }
                roles.push(role.clone());
            }
            roles
        }
        Some(_) => return Err(AuthError::Invalid("roles is not a list")),
    };

    Ok(Identity {
        sub: sub.clone(),
        name,
        roles,
    })
}

/// True when `s` has no whitespace, control characters or invisible
/// formatting characters, so that two identifiers that look the same in a
/// log or UI are the same string.
fn is_printable_token(s: &str) -> bool {
    !s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
}

/// Zero-width and bidirectional formatting characters: not whitespace or
/// control to Rust, but able to disguise one identifier as another.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use proptest::prelude::*;
    use serde_json::json;

    const SECRET: &str = "test-secret-with-enough-entropy-0123456789";
    const RSA_PRIVATE: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/rsa-private.pem"
    ));
    const RSA_PUBLIC: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/rsa-public.pem"
    ));
    const EC_PRIVATE: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/ec-private.pem"
    ));
    const EC_PUBLIC: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/ec-public.pem"
    ));
    const EC_P384_PUBLIC: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/ec-p384-public.pem"
    ));
    const RSA_PKCS1_PUBLIC: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/rsa-public-pkcs1.pem"
    ));
    const RSA_1024_PUBLIC: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/jwt/rsa1024-public.pem"
    ));

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn settings(mode: AuthMode) -> AuthSettings {
        AuthSettings {
            mode,
            jwt_secret: Some(SECRET.into()),
            leeway_s: 0,
            ..AuthSettings::default()
        }
    }

    fn hs(mode: AuthMode) -> Authenticator {
        Authenticator::new(settings(mode)).unwrap()
    }

    fn with_pem(pem: &[u8]) -> Result<Authenticator, AuthError> {
        Authenticator::new(AuthSettings {
            mode: AuthMode::Required,
            jwt_public_key_pem: Some(pem.to_vec()),
            ..AuthSettings::default()
        })
    }

    fn good_claims() -> Value {
        json!({"sub": "user-42", "name": "  Ann  ", "roles": ["player", "mod"], "exp": now() + 600})
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn invalid(r: Result<Identity, AuthError>) -> bool {
        matches!(r, Err(AuthError::Invalid(_)))
    }

    #[test]
    fn hs256_good_token_gives_identity() {
        let t = sign_hs256_for_tests(SECRET, &good_claims());
        let id = hs(AuthMode::Required).verify(&t).unwrap();
        assert_eq!(
            id,
            Identity {
                sub: "user-42".into(),
                name: Some("Ann".into()),
                roles: vec!["player".into(), "mod".into()],
            }
        );
    }

    #[test]
    fn minimal_token_has_no_name_or_roles() {
        let t = sign_hs256_for_tests(SECRET, &json!({"sub": "u", "exp": now() + 60}));
        let id = hs(AuthMode::Required).verify(&t).unwrap();
        assert_eq!(id.name, None);
        assert!(id.roles.is_empty());
        let t = sign_hs256_for_tests(
            SECRET,
            &json!({"sub": "u", "exp": now() + 60, "name": null, "roles": null}),
        );
        assert!(hs(AuthMode::Required).verify(&t).is_ok());
    }

    #[test]
    fn expired_token_is_expired_and_leeway_applies() {
        let claims = json!({"sub": "u", "exp": now() - 30});
        let t = sign_hs256_for_tests(SECRET, &claims);
        assert_eq!(hs(AuthMode::Required).verify(&t), Err(AuthError::Expired));
        let lenient = Authenticator::new(AuthSettings {
            leeway_s: 120,
            ..settings(AuthMode::Required)
        })
        .unwrap();
        assert!(lenient.verify(&t).is_ok());
    }

    #[test]
    fn nbf_in_future_is_refused() {
        let claims = json!({"sub": "u", "exp": now() + 600, "nbf": now() + 300});
        let t = sign_hs256_for_tests(SECRET, &claims);
        assert!(invalid(hs(AuthMode::Required).verify(&t)));
        let claims = json!({"sub": "u", "exp": now() + 600, "nbf": now() - 10});
        let t = sign_hs256_for_tests(SECRET, &claims);
        assert!(hs(AuthMode::Required).verify(&t).is_ok());
    }

    #[test]
    fn wrong_secret_is_invalid() {
        let t = sign_hs256_for_tests("another-secret", &good_claims());
        assert_eq!(
            hs(AuthMode::Required).verify(&t),
            Err(AuthError::Invalid("bad signature"))
        );
    }

    #[test]
    fn tampered_payload_is_invalid() {
        let t = sign_hs256_for_tests(SECRET, &good_claims());
        let parts: Vec<&str> = t.split('.').collect();
        let mut claims = good_claims();
        claims["sub"] = json!("admin");
        let forged = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
        assert_eq!(
            hs(AuthMode::Required).verify(&forged),
            Err(AuthError::Invalid("bad signature"))
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let payload = b64(&good_claims());
        let auth = hs(AuthMode::Required);
        // The classic form, and with a copied signature.
        assert!(invalid(
            auth.verify(&format!("eyJhbGciOiJub25lIn0.{payload}."))
        ));
        let real = sign_hs256_for_tests(SECRET, &good_claims());
        let sig = real.rsplit('.').next().unwrap();
        assert!(invalid(
            auth.verify(&format!("eyJhbGciOiJub25lIn0.{payload}.{sig}"))
        ));
        for alg in ["none", "None", "NONE", ""] {
            let header = b64(&json!({"alg": alg, "typ": "JWT"}));
            assert!(invalid(auth.verify(&format!("{header}.{payload}."))));
        }
    }

    #[test]
    fn other_hmac_algorithms_are_refused() {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let t = sign(alg, &key, &good_claims());
            assert_eq!(
                hs(AuthMode::Required).verify(&t),
                Err(AuthError::Invalid("algorithm not accepted by this server"))
            );
        }
    }

    #[test]
    fn crit_header_is_refused() {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp-ext".into()]);
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let t = jsonwebtoken::encode(&header, &good_claims(), &key).unwrap();
        assert!(invalid(hs(AuthMode::Required).verify(&t)));
    }

    #[test]
    fn missing_or_malformed_exp_is_refused() {
        let auth = hs(AuthMode::Required);
        let t = sign_hs256_for_tests(SECRET, &json!({"sub": "u"}));
        assert_eq!(
            auth.verify(&t),
            Err(AuthError::Invalid("exp claim missing or not a valid time"))
        );
        for exp in [json!("tomorrow"), json!(-5), json!(null), json!([1])] {
            let t = sign_hs256_for_tests(SECRET, &json!({"sub": "u", "exp": exp}));
            assert!(invalid(auth.verify(&t)), "exp {exp}");
        }
    }

    #[test]
    fn bad_sub_is_refused() {
        let auth = hs(AuthMode::Required);
        let exp = now() + 600;
        let long = "x".repeat(65);
        for sub in [
            json!(null),
            json!(""),
            json!(long),
            json!(42),
            json!(["u"]),
            json!("two words"),
            json!("tab\there"),
            json!("nl\n"),
            json!("nul\u{0}"),
            json!("zero\u{200B}width"),
            json!("bidi\u{202E}"),
        ] {
            let t = sign_hs256_for_tests(SECRET, &json!({"sub": sub, "exp": exp}));
            assert!(invalid(auth.verify(&t)), "sub {sub}");
        }
        let t = sign_hs256_for_tests(SECRET, &json!({"exp": exp}));
        assert_eq!(
            auth.verify(&t),
            Err(AuthError::Invalid("missing sub claim"))
        );
        // Limits count characters, not bytes.
        let max = "é".repeat(64);
        let t = sign_hs256_for_tests(SECRET, &json!({"sub": max, "exp": exp}));
        assert_eq!(auth.verify(&t).unwrap().sub, max);
    }

    #[test]
    fn bad_name_is_dropped_not_refused() {
        let auth = hs(AuthMode::Required);
        let exp = now() + 600;
        for name in [
            json!(""),
            json!("   "),
            json!("n".repeat(33)),
            json!("bell\u{7}"),
            json!(7),
            json!({"first": "Ann"}),
        ] {
            let t = sign_hs256_for_tests(SECRET, &json!({"sub": "u", "exp": exp, "name": name}));
            assert_eq!(auth.verify(&t).unwrap().name, None, "name {name}");
        }
        let t = sign_hs256_for_tests(
            SECRET,
            &json!({"sub": "u", "exp": exp, "name": " Zoë the Great "}),
        );
        assert_eq!(
            auth.verify(&t).unwrap().name.as_deref(),
            Some("Zoë the Great")
        );
    }

    #[test]
    fn bad_roles_are_refused() {
        let auth = hs(AuthMode::Required);
        let exp = now() + 600;
        let too_many: Vec<String> = (0..33).map(|i| format!("r{i}")).collect();
        for roles in [
            json!("admin"),
            json!(1),
            json!({"admin": true}),
            json!([1, 2]),
            json!(["ok", null]),
            json!(["ok", ["nested"]]),
            json!([""]),
            json!(["r".repeat(65)]),
            json!(["has space"]),
            json!(too_many),
        ] {
            let t = sign_hs256_for_tests(SECRET, &json!({"sub": "u", "exp": exp, "roles": roles}));
            assert!(invalid(auth.verify(&t)), "roles {roles}");
        }
        let max: Vec<String> = (0..32).map(|i| format!("{i:0>64}")).collect();
        let t = sign_hs256_for_tests(SECRET, &json!({"sub": "u", "exp": exp, "roles": max}));
        assert_eq!(auth.verify(&t).unwrap().roles, max);
    }

    #[test]
    fn audience_and_issuer_are_checked_when_configured() {
        let auth = Authenticator::new(AuthSettings {
            audience: Some("rendezvous".into()),
            issuer: Some("https://auth.example".into()),
            ..settings(AuthMode::Required)
        })
        .unwrap();
        let exp = now() + 600;
        let ok = |c: Value| auth.verify(&sign_hs256_for_tests(SECRET, &c));
        assert!(ok(
            json!({"sub": "u", "exp": exp, "aud": "rendezvous", "iss": "https://auth.example"})
        )
        .is_ok());
        assert!(ok(json!({"sub": "u", "exp": exp, "aud": ["other", "rendezvous"], "iss": "https://auth.example"})).is_ok());
        assert_eq!(
            ok(json!({"sub": "u", "exp": exp, "aud": "other", "iss": "https://auth.example"})),
            Err(AuthError::Invalid("wrong audience"))
        );
        assert_eq!(
            ok(json!({"sub": "u", "exp": exp, "aud": "rendezvous", "iss": "https://evil.example"})),
            Err(AuthError::Invalid("wrong issuer"))
        );
        assert_eq!(
            ok(json!({"sub": "u", "exp": exp, "iss": "https://auth.example"})),
            Err(AuthError::Invalid("missing aud claim"))
        );
        assert_eq!(
            ok(json!({"sub": "u", "exp": exp, "aud": "rendezvous"})),
            Err(AuthError::Invalid("missing iss claim"))
        );
        assert!(invalid(ok(
            json!({"sub": "u", "exp": exp, "aud": 5, "iss": "https://auth.example"})
        )));
    }

    #[test]
    fn audience_and_issuer_are_ignored_when_not_configured() {
        let t = sign_hs256_for_tests(
            SECRET,
            &json!({"sub": "u", "exp": now() + 600, "aud": "anything", "iss": "anyone"}),
        );
        assert!(hs(AuthMode::Required).verify(&t).is_ok());
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        let auth = hs(AuthMode::Required);
        let dots = ".".repeat(10 * 1024);
        let few_dots = ".".repeat(1000);
        let header = b64(&json!({"alg": "HS256"}));
        let inputs = [
            "",
            "abc",
            "a.b.c",
            "..",
            "...",
            "a.b",
            "a.b.c.d",
            "eyJhbGciOiJIUzI1NiJ9..",
            "\u{0}\u{0}.\u{FFFF}.💥",
            &dots,
            &few_dots,
            &format!("{header}.%%%.###"),
            &format!("{header}.{}.", URL_SAFE_NO_PAD.encode("not json")),
            &format!("{header}.{}.", URL_SAFE_NO_PAD.encode([0xff, 0xfe])),
            &format!("{header}.{}.AAAA", b64(&json!([1, 2, 3]))),
        ];
        for t in inputs {
            assert!(invalid(auth.verify(t)), "input {t:?}");
        }
        let long = format!("{}.{}.{}", "a".repeat(5000), "b".repeat(5000), "c");
        assert_eq!(
            auth.verify(&long),
            Err(AuthError::Invalid("token too long"))
        );
    }

    #[test]
    fn error_messages_never_quote_the_token() {
        let auth = hs(AuthMode::Required);
        let marker = "SECRETMARKER";
        let header = b64(&json!({"alg": marker}));
        let payload = b64(&json!({"sub": marker, "exp": marker}));
        for t in [
            format!("{header}.{payload}.{marker}"),
            format!("{}.{payload}.{marker}", b64(&json!({"alg": "HS256"}))),
            sign_hs256_for_tests(SECRET, &json!({"sub": marker, "exp": marker})),
            sign_hs256_for_tests(
                SECRET,
                &json!({"sub": marker, "exp": 1, "roles": [marker, 1]}),
            ),
        ] {
            let e = auth.verify(&t).unwrap_err();
            assert!(!e.to_string().contains(marker), "{e}");
            assert!(!format!("{e:?}").contains(marker), "{e:?}");
        }
    }

    #[test]
    fn check_follows_mode_policy() {
        let good = sign_hs256_for_tests(SECRET, &good_claims());
        let bad = "a.b.c";

        let off = hs(AuthMode::Off);
        assert_eq!(off.check(None), Ok(None));
        assert_eq!(off.check(Some(&good)), Ok(None));
        assert_eq!(off.check(Some(bad)), Ok(None));
        let off_no_key = Authenticator::new(AuthSettings::default()).unwrap();
        assert_eq!(off_no_key.check(Some(bad)), Ok(None));
        assert_eq!(off_no_key.verify(&good), Err(AuthError::NotConfigured));
        assert_eq!(off_no_key.algorithm(), None);

        let opt = hs(AuthMode::Optional);
        assert_eq!(opt.check(None), Ok(None));
        assert_eq!(opt.check(Some("")), Ok(None));
        assert_eq!(opt.check(Some(&good)).unwrap().unwrap().sub, "user-42");
        assert!(matches!(opt.check(Some(bad)), Err(AuthError::Invalid(_))));

        let req = hs(AuthMode::Required);
        assert_eq!(req.check(None), Err(AuthError::Missing));
        assert_eq!(req.check(Some("")), Err(AuthError::Missing));
        assert_eq!(req.check(Some(&good)).unwrap().unwrap().sub, "user-42");
        assert!(matches!(req.check(Some(bad)), Err(AuthError::Invalid(_))));
        assert_eq!(req.mode(), AuthMode::Required);
        assert_eq!(req.algorithm(), Some("HS256"));
    }

    #[test]
    fn rs256_round_trip() {
        let auth = with_pem(RSA_PUBLIC).unwrap();
        assert_eq!(auth.algorithm(), Some("RS256"));
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        let t = sign(Algorithm::RS256, &key, &good_claims());
        assert_eq!(auth.verify(&t).unwrap().sub, "user-42");
        // The same public key in PKCS#1 form works the same.
        let pkcs1 = with_pem(RSA_PKCS1_PUBLIC).unwrap();
        assert_eq!(pkcs1.verify(&t).unwrap().sub, "user-42");
        // Other RSA algorithms are not the configured one.
        for alg in [Algorithm::RS512, Algorithm::PS256] {
            assert!(invalid(auth.verify(&sign(alg, &key, &good_claims()))));
        }
        let expired = sign(
            Algorithm::RS256,
            &key,
            &json!({"sub": "u", "exp": now() - 120}),
        );
        assert_eq!(auth.verify(&expired), Err(AuthError::Expired));
    }

    #[test]
    fn es256_round_trip() {
        let auth = with_pem(EC_PUBLIC).unwrap();
        assert_eq!(auth.algorithm(), Some("ES256"));
        let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        let t = sign(Algorithm::ES256, &key, &good_claims());
        assert_eq!(auth.verify(&t).unwrap().roles, ["player", "mod"]);
        let mut forged: Vec<&str> = t.split('.').collect();
        let payload = b64(&json!({"sub": "admin", "exp": now() + 600}));
        forged[1] = &payload;
        assert!(invalid(auth.verify(&forged.join("."))));
    }

    #[test]
    fn hs256_signed_with_public_key_is_refused() {
        // Algorithm confusion: the attacker knows the public key and uses its
        // PEM bytes as an HMAC secret.
        for pem in [RSA_PUBLIC, EC_PUBLIC] {
            let auth = with_pem(pem).unwrap();
            let t = sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(pem),
                &good_claims(),
            );
            assert_eq!(
                auth.verify(&t),
                Err(AuthError::Invalid("algorithm not accepted by this server"))
            );
            assert!(auth.check(Some(&t)).is_err());
        }
    }

    #[test]
    fn key_types_do_not_cross() {
        let rsa_key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        let ec_key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        let rs = sign(Algorithm::RS256, &rsa_key, &good_claims());
        let es = sign(Algorithm::ES256, &ec_key, &good_claims());
        assert!(invalid(with_pem(EC_PUBLIC).unwrap().verify(&rs)));
        assert!(invalid(with_pem(RSA_PUBLIC).unwrap().verify(&es)));
        assert!(invalid(hs(AuthMode::Required).verify(&rs)));
        // A token whose header claims RS256 but carries an ES256 signature.
        let parts: Vec<&str> = es.split('.').collect();
        let header = b64(&json!({"alg": "RS256", "typ": "JWT"}));
        let mixed = format!("{header}.{}.{}", parts[1], parts[2]);
        assert!(invalid(with_pem(RSA_PUBLIC).unwrap().verify(&mixed)));
    }

    #[test]
    fn new_requires_a_key_unless_off() {
        for mode in [AuthMode::Optional, AuthMode::Required] {
            let e = Authenticator::new(AuthSettings {
                mode,
                ..AuthSettings::default()
            })
            .unwrap_err();
            assert!(matches!(e, AuthError::Config(_)), "{e}");
        }
        assert!(Authenticator::new(AuthSettings::default()).is_ok());
    }

    #[test]
    fn new_refuses_both_keys_and_empty_secret() {
        let both = AuthSettings {
            jwt_public_key_pem: Some(RSA_PUBLIC.to_vec()),
            ..settings(AuthMode::Required)
        };
        assert!(matches!(
            Authenticator::new(both),
            Err(AuthError::Config(_))
        ));
        let both_off = AuthSettings {
            jwt_public_key_pem: Some(RSA_PUBLIC.to_vec()),
            ..settings(AuthMode::Off)
        };
        assert!(matches!(
            Authenticator::new(both_off),
            Err(AuthError::Config(_))
        ));
        for secret in ["", "  "] {
            let s = AuthSettings {
                jwt_secret: Some(secret.into()),
                ..settings(AuthMode::Required)
            };
            assert!(matches!(Authenticator::new(s), Err(AuthError::Config(_))));
        }
    }

    #[test]
    fn new_refuses_absurd_leeway() {
        let s = AuthSettings {
            leeway_s: u64::MAX,
            ..settings(AuthMode::Required)
        };
        assert!(matches!(Authenticator::new(s), Err(AuthError::Config(_))));
        let s = AuthSettings {
            leeway_s: MAX_LEEWAY_S,
            ..settings(AuthMode::Required)
        };
        assert!(Authenticator::new(s).is_ok());
    }

    #[test]
    fn new_refuses_unusable_pem() {
        let rsa_body: String = String::from_utf8_lossy(RSA_PUBLIC)
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let truncated = &RSA_PUBLIC[..RSA_PUBLIC.len() / 2];
        // A well-formed PEM whose body is not a key.
        let not_a_key = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(b"hello, world")
        );
        let cases: [&[u8]; 10] = [
            b"",
            b"garbage",
            b"-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n",
            not_a_key.as_bytes(),
            rsa_body.as_bytes(),
            truncated,
            RSA_PRIVATE,
            EC_PRIVATE,
            EC_P384_PUBLIC,
            RSA_1024_PUBLIC,
        ];
        for pem in cases {
            let e = with_pem(pem).unwrap_err();
            assert!(matches!(e, AuthError::BadKey(_)), "{e}");
        }
        assert!(with_pem(&[0xff, 0x00, 0x80]).is_err());
        let e = with_pem(RSA_PRIVATE).unwrap_err().to_string();
        assert!(e.contains("private key"), "{e}");
        let e = with_pem(EC_P384_PUBLIC).unwrap_err().to_string();
        assert!(e.contains("P-256"), "{e}");
        let e = with_pem(RSA_1024_PUBLIC).unwrap_err().to_string();
        assert!(e.contains("2048"), "{e}");
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let s = settings(AuthMode::Required);
        assert!(!format!("{s:?}").contains(SECRET));
        let a = Authenticator::new(s).unwrap();
        assert!(!format!("{a:?}").contains(SECRET));
    }

    /// A JSON value of any shape, small enough to keep cases quick.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,70}".prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 40, 40, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..40).prop_map(Value::from),
                prop::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn verify_never_panics_on_any_string(s in any::<String>()) {
            let auth = hs(AuthMode::Required);
            prop_assert!(auth.verify(&s).is_err());
            let _ = auth.check(Some(&s));
            let _ = hs(AuthMode::Optional).check(Some(&s));
        }

        #[test]
        fn verify_never_panics_on_token_shaped_input(
            s in "[A-Za-z0-9_=.+/-]{0,300}",
            header in any_json(),
        ) {
            let auth = hs(AuthMode::Required);
            prop_assert!(auth.verify(&s).is_err());
            let t = format!("{}.{}", b64(&header), s);
            prop_assert!(auth.verify(&t).is_err());
            prop_assert!(with_pem(EC_PUBLIC).unwrap().verify(&t).is_err());
        }

        #[test]
        fn validly_signed_claims_never_panic_and_obey_the_rules(
            // Weighted towards acceptable values so that the rules on
            // accepted identities get exercised, not only the refusals.
            sub in prop_oneof![
                3 => "[!-~]{1,64}".prop_map(Value::from),
                1 => ".{0,70}".prop_map(Value::from),
                1 => any_json(),
            ],
            name in prop_oneof![".{0,40}".prop_map(Value::from), any_json()],
            roles in prop_oneof![
                3 => prop::collection::vec("[!-~]{1,64}", 0..33).prop_map(Value::from),
                1 => prop::collection::vec(".{0,66}", 0..34).prop_map(Value::from),
                1 => any_json(),
            ],
            exp in prop_oneof![
                3 => Just(now() as i64 + 600),
                1 => Just(i64::MAX),
                1 => any::<i64>(),
            ],
            extra in any_json(),
        ) {
            let claims = json!({"sub": sub, "name": name, "roles": roles, "exp": exp, "x": extra});
            let t = sign_hs256_for_tests(SECRET, &claims);
            if let Ok(id) = hs(AuthMode::Required).verify(&t) {
                prop_assert_eq!(Some(id.sub.as_str()), claims["sub"].as_str());
                prop_assert!((1..=MAX_SUB_CHARS).contains(&id.sub.chars().count()));
                prop_assert!(is_printable_token(&id.sub));
                if let Some(n) = &id.name {
                    prop_assert_eq!(n.trim(), n);
                    prop_assert!((1..=MAX_NAME_CHARS).contains(&n.chars().count()));
                }
                let sent: Vec<&str> = claims["roles"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                prop_assert_eq!(&id.roles, &sent);
                prop_assert!(id.roles.len() <= MAX_ROLES);
                for r in &id.roles {
                    prop_assert!((1..=MAX_ROLE_CHARS).contains(&r.chars().count()));
                }
            }
        }
    }
}
