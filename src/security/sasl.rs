//! One connection's SASL authentication, as Kafka runs it (KIP-43's
//! SaslHandshake, KIP-152's SaslAuthenticate): PLAIN and SCRAM-SHA-256/512
//! against the broker's SCRAM credentials.
//!
//! Owns: the state of a connection's authentication (which mechanism the
//! handshake chose, a SCRAM exchange between its steps, the principal once
//! authenticated, a re-authentication's check that the principal stays the
//! same); PLAIN's message format.
//!
//! Must never: authenticate without a credential that matches, say which of
//! user and password was wrong, or keep a password past the check.

use thiserror::Error;

use super::scram::{self, Credential, Exchange, ScramError};

/// A SASL mechanism a listener may accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SaslMechanism {
    Plain,
    Scram(scram::Mechanism),
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::Plain,
        SaslMechanism::Scram(scram::Mechanism::Sha256),
        SaslMechanism::Scram(scram::Mechanism::Sha512),
    ];

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }

    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SaslError {
    /// Kafka's UNSUPPORTED_SASL_MECHANISM: the answer lists the enabled.
    #[error("SASL mechanism {0:?} is not enabled on this listener")]
    UnsupportedMechanism(String),
    /// Kafka's ILLEGAL_SASL_STATE.
    #[error("{0}")]
    IllegalState(&'static str),
    /// Kafka's SASL_AUTHENTICATION_FAILED; the connection is closed after
    /// the answer.
    #[error("authentication failed: {0}")]
    Failed(String),
}

impl From<ScramError> for SaslError {
    fn from(e: ScramError) -> SaslError {
        match e {
            // One message for a wrong password and an unknown user.
            ScramError::BadCredentials => SaslError::Failed("invalid username or password".into()),
            other => SaslError::Failed(other.to_string()),
        }
    }
}

/// What an authenticate step answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes; the client has more to say.
    Continue(Vec<u8>),
    /// Authenticated as `principal` (`User:<name>`); send these bytes
    /// (empty for PLAIN).
    Done { principal: String, reply: Vec<u8> },
}

#[derive(Debug)]
enum State {
    /// Nothing yet, or authenticated (re-authentication starts here too).
    Idle,
    Chosen(SaslMechanism),
    Scram(Box<Exchange>),
}

/// A connection's authentication.
#[derive(Debug)]
pub struct Authenticator {
    enabled: Vec<SaslMechanism>,
    state: State,
    principal: Option<String>,
    /// The user the last authentication was for (for the log of a
    /// failure).
    attempted: Option<String>,
}

/// The principal Kafka gives a SASL user.
pub fn principal_of(user: &str) -> String {
    format!("User:{user}")
}

impl Authenticator {
    pub fn new(enabled: Vec<SaslMechanism>) -> Authenticator {
        Authenticator {
            enabled,
            state: State::Idle,
            principal: None,
            attempted: None,
        }
    }

    /// The mechanisms this listener accepts, by Kafka's names.
    pub fn enabled_names(&self) -> Vec<&'static str> {
        self.enabled.iter().map(|m| m.name()).collect()
    }

    /// Authenticated as this principal (and not re-authenticating right
    /// now: a re-authentication keeps the principal it started with).
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The user the last authentication named, if it got that far.
    pub fn attempted_user(&self) -> Option<&str> {
        self.attempted.as_deref()
    }

    /// SaslHandshake: the client picks a mechanism.
    pub fn handshake(&mut self, mechanism: &str) -> Result<(), SaslError> {
        if !matches!(self.state, State::Idle) {
            return Err(SaslError::IllegalState(
                "a handshake in the middle of an authentication",
            ));
        }
        let m = SaslMechanism::from_name(mechanism)
            .filter(|m| self.enabled.contains(m))
            .ok_or_else(|| SaslError::UnsupportedMechanism(mechanism.to_owned()))?;
        self.state = State::Chosen(m);
        Ok(())
    }

    /// SaslAuthenticate: one token from the client. `credential` finds a
    /// user's credential for a SCRAM mechanism; `random` fills nonces.
    pub fn authenticate(
        &mut self,
        token: &[u8],
        credential: &dyn Fn(&str, scram::Mechanism) -> Option<Credential>,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Step, SaslError> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => Err(SaslError::IllegalState(
                "SaslAuthenticate before SaslHandshake",
            )),
            State::Chosen(SaslMechanism::Plain) => {
                self.attempted = plain_user(token);
                let user = plain(token, credential)?;
                self.done(user, Vec::new())
            }
            State::Chosen(SaslMechanism::Scram(m)) => {
                let (e, reply) = Exchange::start(m, token, |u| credential(u, m), random)?;
                self.attempted = Some(e.user().to_owned());
                self.state = State::Scram(Box::new(e));
                Ok(Step::Continue(reply))
            }
            State::Scram(e) => {
                let (user, reply) = e.finish(token)?;
                self.done(user, reply)
            }
        }
    }

    fn done(&mut self, user: String, reply: Vec<u8>) -> Result<Step, SaslError> {
        let principal = principal_of(&user);
        if let Some(before) = &self.principal {
            // KIP-368: a re-authentication may not change who it is.
            if *before != principal {
                return Err(SaslError::Failed(
                    "a re-authentication may not change the principal".into(),
                ));
            }
        }
        self.principal = Some(principal.clone());
        Ok(Step::Done { principal, reply })
    }
}

/// PLAIN's user name, for the log (None when the message has none).
fn plain_user(token: &[u8]) -> Option<String> {
    let user = token.split(|&b| b == 0).nth(1)?;
    std::str::from_utf8(user).ok().map(str::to_owned)
}

/// PLAIN (RFC 4616): `authzid NUL authcid NUL password`, checked against
/// the user's SCRAM credential (either mechanism). Returns the user.
fn plain(
    token: &[u8],
    credential: &dyn Fn(&str, scram::Mechanism) -> Option<Credential>,
) -> Result<String, SaslError> {
    if token.len() > scram::MAX_MESSAGE_BYTES {
        return Err(SaslError::Failed("a PLAIN message over 4 KiB".into()));
    }
    let mut parts = token.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Failed("a malformed PLAIN message".into()));
    };
    let user = std::str::from_utf8(user)
        .map_err(|_| SaslError::Failed("a user name that is not UTF-8".into()))?;
    if user.is_empty() || (!authzid.is_empty() && authzid != user.as_bytes()) {
        return Err(SaslError::Failed("invalid username or password".into()));
    }
    let ok = scram::Mechanism::ALL
        .into_iter()
        .find_map(|m| credential(user, m))
        .is_some_and(|c| c.matches_password(password));
    if ok {
        Ok(user.to_owned())
    } else {
        Err(SaslError::Failed("invalid username or password".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::tests::client_final;
    use crate::security::scram::Mechanism;

    fn store(user: &str, m: Mechanism) -> Option<Credential> {
        (user == "alice" && m == Mechanism::Sha512).then(|| {
            Credential::from_password(Mechanism::Sha512, b"pw", b"salt".to_vec(), 4096).unwrap()
        })
    }

    #[test]
    fn plain_and_scram_authenticate_against_one_store() {
        let all = SaslMechanism::ALL.to_vec();
        let mut a = Authenticator::new(all.clone());
        a.handshake("PLAIN").unwrap();
        assert_eq!(
            a.authenticate(b"\0alice\0pw", &store, &mut |b| b.fill(1)),
            Ok(Step::Done {
                principal: "User:alice".into(),
                reply: vec![]
            })
        );
        let mut a = Authenticator::new(all.clone());
        a.handshake("PLAIN").unwrap();
        assert!(matches!(
            a.authenticate(b"\0alice\0nope", &store, &mut |b| b.fill(1)),
            Err(SaslError::Failed(_))
        ));
        assert_eq!(a.principal(), None);

        let mut a = Authenticator::new(all);
        a.handshake("SCRAM-SHA-512").unwrap();
        let bare = "n=alice,r=clientnonce";
        let Step::Continue(sf) = a
            .authenticate(format!("n,,{bare}").as_bytes(), &store, &mut |b| b.fill(5))
            .unwrap()
        else {
            panic!()
        };
        let cf = client_final(
            Mechanism::Sha512,
            b"pw",
            bare,
            std::str::from_utf8(&sf).unwrap(),
        );
        let Step::Done { principal, reply } = a
            .authenticate(cf.as_bytes(), &store, &mut |b| b.fill(5))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(principal, "User:alice");
        assert!(reply.starts_with(b"v="));
        assert_eq!(a.principal(), Some("User:alice"));
        // Re-authentication (KIP-368) as someone else: refused.
        a.handshake("PLAIN").unwrap();
        assert!(a
            .authenticate(
                b"\0bob\0pw",
                &|_, _| store("alice", Mechanism::Sha512),
                &mut |b| b.fill(1)
            )
            .is_err());
    }

    #[test]
    fn mechanisms_and_order_are_enforced() {
        let mut a = Authenticator::new(vec![SaslMechanism::Scram(Mechanism::Sha512)]);
        assert_eq!(
            a.handshake("PLAIN"),
            Err(SaslError::UnsupportedMechanism("PLAIN".into()))
        );
        assert_eq!(
            a.handshake("GSSAPI"),
            Err(SaslError::UnsupportedMechanism("GSSAPI".into()))
        );
        assert!(matches!(
            a.authenticate(b"x", &store, &mut |b| b.fill(1)),
            Err(SaslError::IllegalState(_))
        ));
        a.handshake("SCRAM-SHA-512").unwrap();
        assert!(matches!(
            a.handshake("SCRAM-SHA-512"),
            Err(SaslError::IllegalState(_))
        ));
        for bad in [
            &b"alice\0pw"[..],
            b"\0\0",
            b"bob\0alice\0pw",
            b"\0alice\0pw\0x",
        ] {
            let mut a = Authenticator::new(vec![SaslMechanism::Plain]);
            a.handshake("PLAIN").unwrap();
            assert!(
                a.authenticate(bad, &store, &mut |b| b.fill(1)).is_err(),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Tokens off the network in every state: an error or a step,
        /// never a panic, and never authenticated without the password.
        #[test]
        fn fuzz_authenticate_never_panics_or_passes_garbage(
            mech in 0usize..3,
            tokens in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120), 1..4),
        ) {
            let mut a = Authenticator::new(SaslMechanism::ALL.to_vec());
            a.handshake(SaslMechanism::ALL[mech].name()).unwrap();
            for t in &tokens {
                if let Ok(Step::Done { .. }) = a.authenticate(t, &store, &mut |b| b.fill(2)) {
                    proptest::prop_assert!(t.windows(2).any(|w| w == b"pw"), "{:?}", t);
                }
            }
        }
    }
}
