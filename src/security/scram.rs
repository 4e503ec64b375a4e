//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks
//! them (KIP-84): the stored credential and the server's side of one
//! exchange.
//!
//! Owns: deriving a credential (salt, iterations, StoredKey, ServerKey)
//! from a password or from the salted password Kafka's
//! AlterUserScramCredentials carries; the two server steps of an exchange
//! (client-first -> server-first, client-final -> server-final), each
//! message parsed with every field checked; the password check PLAIN
//! uses against the same credential.
//!
//! Must never: keep or return a password or a salted password (only the
//! derived keys are kept), compare a proof in time that depends on where it
//! differs, allocate by a length off the wire beyond the message itself, or
//! tell an unknown user from a wrong password in what it answers.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use thiserror::Error;

/// Kafka's bounds on a credential's iterations (ScramMechanism).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;
/// The iterations `shardlog user add` uses (Kafka's tools default to 4096;
/// more costs a login more and a guess more, the same factor).
pub const DEFAULT_ITERATIONS: u32 = 8192;
/// Longest SCRAM message taken (a user name, a nonce, a proof and some
/// extensions fit in far less).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The server's share of the nonce, in random bytes (before base64).
const SERVER_NONCE_BYTES: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's ScramMechanism type id (DescribeUserScramCredentials).
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    /// The hash's output length.
    pub fn hash_len(self) -> usize {
        match self {
            Mechanism::Sha256 => 32,
            Mechanism::Sha512 => 64,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with this HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.hash_len()];
        match self {
            Mechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            Mechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }
}

/// One user's credential for one mechanism: what the broker stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub mechanism: Mechanism,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScramError {
    #[error("iterations {0} are not in {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u32),
    #[error("a salted password of {got} bytes for {mechanism:?} (it is {want})")]
    SaltedPasswordLength {
        mechanism: Mechanism,
        got: usize,
        want: usize,
    },
    #[error("an empty salt")]
    EmptySalt,
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("SCRAM feature not supported: {0}")]
    Unsupported(&'static str),
    /// Unknown user, wrong password, a tampered exchange: one answer for
    /// all, as Kafka gives.
    #[error("authentication failed: invalid credentials")]
    BadCredentials,
}

fn check_iterations(iterations: u32) -> Result<(), ScramError> {
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        Ok(())
    } else {
        Err(ScramError::Iterations(iterations))
    }
}

impl Credential {
    /// From a password (`shardlog user add`, and the check of PLAIN).
    pub fn from_password(
        mechanism: Mechanism,
        password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Credential, ScramError> {
        check_iterations(iterations)?;
        if salt.is_empty() {
            return Err(ScramError::EmptySalt);
        }
        let salted = mechanism.salted_password(password, &salt, iterations);
        Credential::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// From the salted password a client computed (Kafka's
    /// AlterUserScramCredentials: the password never reaches the broker).
    pub fn from_salted_password(
        mechanism: Mechanism,
        salted: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Credential, ScramError> {
        check_iterations(iterations)?;
        if salt.is_empty() {
            return Err(ScramError::EmptySalt);
        }
        if salted.len() != mechanism.hash_len() {
            return Err(ScramError::SaltedPasswordLength {
                mechanism,
                got: salted.len(),
                want: mechanism.hash_len(),
            });
        }
        let client_key = mechanism.hmac(salted, b"Client Key");
        Ok(Credential {
            mechanism,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
            salt,
            iterations,
        })
    }

    /// Does `password` derive this credential? (SASL/PLAIN checks the
    /// password against the stored SCRAM credential, as Redpanda does: one
    /// user store for every mechanism.)
    pub fn matches_password(&self, password: &[u8]) -> bool {
        let salted = self
            .mechanism
            .salted_password(password, &self.salt, self.iterations);
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        constant_time_eq(&self.mechanism.hash(&client_key), &self.stored_key)
    }
}

/// Equal bytes, in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A user name as SCRAM carries it: `=2C` for `,` and `=3D` for `=`; any
/// other `=` is malformed.
fn decode_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest
            .get(i..i + 3)
            .ok_or(ScramError::Malformed("a bad '=' in the user name"))?;
        out.push(match esc {
            "=2C" => ',',
            "=3D" => '=',
            _ => return Err(ScramError::Malformed("a bad '=' in the user name")),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `name=value` attributes, each one letter and `=`.
fn attr(part: &str, name: char) -> Result<&str, ScramError> {
    let mut c = part.chars();
    if c.next() == Some(name) && c.next() == Some('=') {
        Ok(&part[2..])
    } else {
        Err(ScramError::Malformed("an attribute out of place"))
    }
}

fn printable_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// The server's side of one exchange, between its two steps.
#[derive(Debug)]
pub struct Exchange {
    mechanism: Mechanism,
    user: String,
    /// Client nonce + server nonce.
    nonce: String,
    /// The client's share of it.
    client_nonce: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    /// None: the user is unknown; the exchange goes on to fail at the end,
    /// answering as for a wrong password.
    credential: Option<Credential>,
}

impl Exchange {
    /// The client's first message: returns the exchange and the
    /// server-first message. `lookup` finds the user's credential for this
    /// mechanism; `random` fills the server nonce (and a made-up salt for an
    /// unknown user, so the answer does not tell).
    pub fn start(
        mechanism: Mechanism,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(Exchange, Vec<u8>), ScramError> {
        if client_first.len() > MAX_MESSAGE_BYTES {
            return Err(ScramError::Malformed("a message over 4 KiB"));
        }
        let msg =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: channel binding flag, optional authzid, then the
        // bare message.
        let mut parts = msg.splitn(3, ',');
        let cbind = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        match cbind {
            "n" | "y" => {}
            _ if cbind.starts_with("p=") => return Err(ScramError::Unsupported("channel binding")),
            _ => return Err(ScramError::Malformed("a bad channel binding flag")),
        }
        let authzid = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        let bare = parts
            .next()
            .ok_or(ScramError::Malformed("no client-first-bare"))?;
        let gs2_header = format!("{cbind},{authzid},");
        let mut fields = bare.split(',');
        let first = fields.next().unwrap_or_default();
        if first.starts_with("m=") {
            return Err(ScramError::Unsupported("mandatory extensions"));
        }
        let user = decode_name(attr(first, 'n')?)?;
        if user.is_empty() {
            return Err(ScramError::Malformed("an empty user name"));
        }
        if !authzid.is_empty() && decode_name(attr(authzid, 'a')?)? != user {
            // Kafka: an authorization id must be the user itself.
            return Err(ScramError::BadCredentials);
        }
        let client_nonce = attr(fields.next().unwrap_or_default(), 'r')?;
        if !printable_nonce(client_nonce) {
            return Err(ScramError::Malformed("a bad client nonce"));
        }
        for ext in fields {
            // Kafka's only extension is tokenauth (delegation tokens).
            if ext.starts_with("tokenauth=") {
                return Err(ScramError::Unsupported("delegation tokens"));
            }
        }
        let mut snonce = [0u8; SERVER_NONCE_BYTES];
        random(&mut snonce);
        let nonce = format!("{client_nonce}{}", B64.encode(snonce));
        let credential = lookup(&user).filter(|c| c.mechanism == mechanism);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => {
                let mut s = vec![0u8; 16];
                random(&mut s);
                (s, DEFAULT_ITERATIONS)
            }
        };
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        let e = Exchange {
            mechanism,
            user,
            nonce,
            client_nonce: client_nonce.to_owned(),
            gs2_header,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            credential,
        };
        Ok((e, server_first.into_bytes()))
    }

    /// The client's final message: the authenticated user and the
    /// server-final message (the server's signature), or why not.
    pub fn finish(self, client_final: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        if client_final.len() > MAX_MESSAGE_BYTES {
            return Err(ScramError::Malformed("a message over 4 KiB"));
        }
        let msg =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut fields = without_proof.split(',');
        let binding = attr(fields.next().unwrap_or_default(), 'c')?;
        let nonce = attr(fields.next().unwrap_or_default(), 'r')?;
        if B64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::BadCredentials);
        }
        // RFC 5802: the nonce the server sent, exactly. librdkafka before
        // 2.6.1 (Debian's kcat) sends the client's share twice, its own
        // nonce before the server's whole one (confluentinc/librdkafka
        // #4895); Kafka 4 refuses it. Taken here in that one shape: the
        // server's fresh nonce is still checked in full, so nothing is
        // replayable, and those clients can log in.
        let buggy_librdkafka = nonce.len() == self.client_nonce.len() + self.nonce.len()
            && nonce.starts_with(&self.client_nonce)
            && nonce.ends_with(&self.nonce);
        if nonce != self.nonce && !buggy_librdkafka {
            return Err(ScramError::BadCredentials);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("a proof that is not base64"))?;
        let Some(cred) = self.credential else {
            return Err(ScramError::BadCredentials);
        };
        if proof.len() != self.mechanism.hash_len() {
            return Err(ScramError::BadCredentials);
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = self
            .mechanism
            .hmac(&cred.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !constant_time_eq(&self.mechanism.hash(&client_key), &cred.stored_key) {
            return Err(ScramError::BadCredentials);
        }
        let server_signature = self
            .mechanism
            .hmac(&cred.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", B64.encode(server_signature));
        Ok((self.user, server_final.into_bytes()))
    }

    pub fn user(&self) -> &str {
        &self.user
    }
}

/// A user name as SCRAM carries it (`,` and `=` escaped).
fn encode_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The client's proof and the server signature it should answer with,
/// from the salted password and the exchange's auth message.
fn client_proof(m: Mechanism, salted: &[u8], auth_message: &str) -> (Vec<u8>, Vec<u8>) {
    let client_key = m.hmac(salted, b"Client Key");
    let stored = m.hash(&client_key);
    let signature = m.hmac(&stored, auth_message.as_bytes());
    let proof = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_key = m.hmac(salted, b"Server Key");
    (proof, m.hmac(&server_key, auth_message.as_bytes()))
}

/// The client's side of one exchange, for the bundled clients (the bench
/// tool's `--kafka` mode; the CLI). The password is held only until the
/// server's first message arrives; the server is checked too (its final
/// signature proves it holds the credential, not just a copy of the
/// traffic).
pub struct ClientExchange {
    mechanism: Mechanism,
    password: Vec<u8>,
    client_nonce: String,
    client_first_bare: String,
    /// After `respond`: the server-final signature to expect.
    server_signature: Option<Vec<u8>>,
}

impl ClientExchange {
    /// The client-first message (no channel binding, no authorization id).
    pub fn start(
        mechanism: Mechanism,
        user: &str,
        password: &str,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> (ClientExchange, Vec<u8>) {
        let mut n = [0u8; 24];
        random(&mut n);
        let client_nonce = B64.encode(n);
        let client_first_bare = format!("n={},r={client_nonce}", encode_name(user));
        let first = format!("n,,{client_first_bare}").into_bytes();
        let e = ClientExchange {
            mechanism,
            password: password.as_bytes().to_vec(),
            client_nonce,
            client_first_bare,
            server_signature: None,
        };
        (e, first)
    }

    /// The client-final message from the server-first one: the server's
    /// nonce must extend ours, its iterations be within Kafka's bounds.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        if server_first.len() > MAX_MESSAGE_BYTES {
            return Err(ScramError::Malformed("a message over 4 KiB"));
        }
        let msg =
            std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if msg.starts_with("e=") {
            return Err(ScramError::BadCredentials);
        }
        let mut f = msg.split(',');
        let nonce = attr(f.next().unwrap_or_default(), 'r')?;
        let salt = B64
            .decode(attr(f.next().unwrap_or_default(), 's')?)
            .map_err(|_| ScramError::Malformed("a salt that is not base64"))?;
        let iterations: u32 = attr(f.next().unwrap_or_default(), 'i')?
            .parse()
            .map_err(|_| ScramError::Malformed("iterations that are not a number"))?;
        if !nonce.starts_with(&self.client_nonce)
            || nonce.len() == self.client_nonce.len()
            || !printable_nonce(nonce)
        {
            return Err(ScramError::Malformed(
                "a server nonce that does not extend ours",
            ));
        }
        if salt.is_empty() {
            return Err(ScramError::EmptySalt);
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let password = std::mem::take(&mut self.password);
        let salted = self.mechanism.salted_password(&password, &salt, iterations);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{msg},{without_proof}", self.client_first_bare);
        let (proof, server_signature) = client_proof(self.mechanism, &salted, &auth);
        self.server_signature = Some(server_signature);
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: `Ok` only for the signature of a
    /// server that holds the user's credential.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let msg =
            std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if msg.starts_with("e=") {
            return Err(ScramError::BadCredentials);
        }
        let v = B64
            .decode(attr(msg, 'v')?)
            .map_err(|_| ScramError::Malformed("a signature that is not base64"))?;
        match &self.server_signature {
            Some(want) if constant_time_eq(want, &v) => Ok(()),
            _ => Err(ScramError::BadCredentials),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil".
    #[test]
    fn rfc_7677_example_authenticates() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = Credential::from_password(Mechanism::Sha256, b"pencil", salt, 4096).unwrap();
        // The RFC's server nonce is not base64 of random bytes: the
        // exchange is started, then given the RFC's nonce and salt.
        let client_first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let (mut e, _) = Exchange::start(
            Mechanism::Sha256,
            client_first,
            |u| (u == "user").then(|| cred.clone()),
            &mut |b| b.fill(0),
        )
        .unwrap();
        e.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        e.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", e.nonce);
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let (user, server_final) = e.finish(client_final).unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        );
    }

    /// A client's side, for the tests: client-first, then client-final
    /// from the server-first.
    pub(crate) fn client_final(
        m: Mechanism,
        password: &[u8],
        client_first_bare: &str,
        server_first: &str,
    ) -> String {
        client_final_sending(m, password, client_first_bare, server_first, |n| {
            n.to_owned()
        })
    }

    /// The same, sending the nonce `sent` makes of the server's.
    fn client_final_sending(
        m: Mechanism,
        password: &[u8],
        client_first_bare: &str,
        server_first: &str,
        sent: impl Fn(&str) -> String,
    ) -> String {
        let mut salt = None;
        let mut iters = 0;
        let mut nonce = "";
        for f in server_first.split(',') {
            if let Some(v) = f.strip_prefix("r=") {
                nonce = v;
            } else if let Some(v) = f.strip_prefix("s=") {
                salt = Some(B64.decode(v).unwrap());
            } else if let Some(v) = f.strip_prefix("i=") {
                iters = v.parse().unwrap();
            }
        }
        let salted = m.salted_password(password, &salt.unwrap(), iters);
        let without_proof = format!("c=biws,r={}", sent(nonce));
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let (proof, _) = client_proof(m, &salted, &auth);
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn the_client_side_logs_in_and_checks_the_server() {
        for m in Mechanism::ALL {
            let stored =
                Credential::from_password(m, b"s3cret", b"salty-salt".to_vec(), 4096).unwrap();
            let login = |password: &str, tamper: bool| {
                let (mut c, first) =
                    ClientExchange::start(m, "al,ice=", password, &mut |b| b.fill(3));
                let (e, sf) = Exchange::start(
                    m,
                    &first,
                    |u| (u == "al,ice=").then(|| stored.clone()),
                    &mut |b| b.fill(9),
                )
                .unwrap();
                let cf = c.respond(&sf).unwrap();
                let (user, mut sfinal) = e.finish(&cf)?;
                if tamper {
                    let n = sfinal.len();
                    sfinal[n - 3] ^= 1;
                }
                c.verify(&sfinal).map(|()| user)
            };
            assert_eq!(login("s3cret", false).unwrap(), "al,ice=");
            assert!(matches!(
                login("wrong", false),
                Err(ScramError::BadCredentials)
            ));
            assert!(
                login("s3cret", true).is_err(),
                "a server without the credential"
            );
        }
        // A server that does not extend the client's nonce, or asks for
        // too few iterations, is refused before any proof is sent.
        let (mut c, _) = ClientExchange::start(Mechanism::Sha256, "u", "p", &mut |b| b.fill(1));
        assert!(c.respond(b"r=other,s=c2FsdA==,i=4096").is_err());
        let (mut c, first) = ClientExchange::start(Mechanism::Sha256, "u", "p", &mut |b| b.fill(1));
        let first = String::from_utf8(first).unwrap();
        let nonce = first.rsplit_once("r=").unwrap().1;
        let low = format!("r={nonce}xyz,s=c2FsdA==,i=1");
        assert!(matches!(
            c.respond(low.as_bytes()),
            Err(ScramError::Iterations(1))
        ));
        assert!(c.respond(b"e=invalid-proof").is_err());
    }

    #[test]
    fn the_nonce_must_be_the_servers_or_old_librdkafkas_doubled_client_share() {
        let m = Mechanism::Sha256;
        let stored = Credential::from_password(m, b"pw", b"salty-salt".to_vec(), 4096).unwrap();
        let bare = "n=alice,r=clientnonce";
        let attempt = |sent: &dyn Fn(&str) -> String| {
            let (e, sf) = Exchange::start(
                m,
                format!("n,,{bare}").as_bytes(),
                |_| Some(stored.clone()),
                &mut |b| b.fill(7),
            )
            .unwrap();
            let sf = String::from_utf8(sf).unwrap();
            let cf = client_final_sending(m, b"pw", bare, &sf, sent);
            e.finish(cf.as_bytes()).map(|(u, _)| u)
        };
        assert_eq!(attempt(&|n| n.to_owned()).unwrap(), "alice");
        // librdkafka < 2.6.1: its own nonce, then the server's whole one.
        assert_eq!(attempt(&|n| format!("clientnonce{n}")).unwrap(), "alice");
        // Anything else is refused, even with a proof made over it.
        for bad in [
            &(|_: &str| "clientnonce".to_owned()) as &dyn Fn(&str) -> String,
            &|n: &str| format!("x{n}"),
            &|n: &str| format!("{n}clientnonce"),
            &|n: &str| n[..n.len() - 1].to_owned(),
        ] {
            assert!(matches!(attempt(bad), Err(ScramError::BadCredentials)));
        }
    }

    fn exchange(
        m: Mechanism,
        stored: &Credential,
        user: &str,
        password: &[u8],
    ) -> Result<String, ScramError> {
        let bare = format!("n={user},r=abcdefghijklmnop");
        let (e, sf) = Exchange::start(
            m,
            format!("n,,{bare}").as_bytes(),
            |u| (u == "alice").then(|| stored.clone()),
            &mut |b| b.fill(7),
        )?;
        let sf = String::from_utf8(sf).unwrap();
        let cf = client_final(m, password, &bare, &sf);
        e.finish(cf.as_bytes()).map(|(u, _)| u)
    }

    #[test]
    fn both_mechanisms_authenticate_and_refuse_alike() {
        for m in Mechanism::ALL {
            let c = Credential::from_password(m, b"s3cret", b"salty".to_vec(), 4096).unwrap();
            assert_eq!(exchange(m, &c, "alice", b"s3cret"), Ok("alice".into()));
            // Wrong password and unknown user: the same error.
            assert_eq!(
                exchange(m, &c, "alice", b"guess"),
                Err(ScramError::BadCredentials)
            );
            assert_eq!(
                exchange(m, &c, "mallory", b"s3cret"),
                Err(ScramError::BadCredentials)
            );
            assert!(c.matches_password(b"s3cret"));
            assert!(!c.matches_password(b"s3cret "));
            // Kafka's AlterUserScramCredentials path: the same credential.
            let salted = m.salted_password(b"s3cret", b"salty", 4096);
            assert_eq!(
                Credential::from_salted_password(m, &salted, b"salty".to_vec(), 4096).unwrap(),
                c
            );
        }
        // A credential of the other mechanism does not serve this one.
        let c = Credential::from_password(Mechanism::Sha512, b"pw", b"s".to_vec(), 4096).unwrap();
        assert_eq!(
            exchange(Mechanism::Sha256, &c, "alice", b"pw"),
            Err(ScramError::BadCredentials)
        );
    }

    #[test]
    fn bad_parameters_and_messages_are_refused() {
        let m = Mechanism::Sha256;
        assert_eq!(
            Credential::from_password(m, b"p", b"s".to_vec(), 4095),
            Err(ScramError::Iterations(4095))
        );
        assert!(Credential::from_password(m, b"p", vec![], 4096).is_err());
        assert!(Credential::from_salted_password(m, &[0; 31], b"s".to_vec(), 4096).is_err());
        let none = |_: &str| None;
        for bad in [
            &b""[..],
            b"x,,n=a,r=b",
            b"p=tls-unique,,n=a,r=b",
            b"n,,n=,r=b",
            b"n,,n=a=ZZ,r=b",
            b"n,,r=b,n=a",
            b"n,,n=a,r=",
            b"n,,n=a,r=b,tokenauth=true",
            b"n,,m=ext,n=a,r=b",
            b"n,a=bob,n=alice,r=b",
        ] {
            assert!(
                Exchange::start(m, bad, none, &mut |b| b.fill(1)).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(decode_name("a=2Cb=3D").unwrap(), "a,b=");
        let c = Credential::from_password(m, b"pw", b"s".to_vec(), 4096).unwrap();
        let (e, _) = Exchange::start(m, b"n,,n=alice,r=nonce", |_| Some(c.clone()), &mut |b| {
            b.fill(1)
        })
        .unwrap();
        assert!(e.finish(b"c=biws,r=other,p=AAAA").is_err());
    }

    /// One credential and one valid exchange, computed once: PBKDF2 per
    /// case would make the fuzzers slow.
    fn fixture() -> &'static (Credential, String, Vec<u8>) {
        static F: std::sync::OnceLock<(Credential, String, Vec<u8>)> = std::sync::OnceLock::new();
        F.get_or_init(|| {
            let m = Mechanism::Sha256;
            let c = Credential::from_password(m, b"pw", b"salt".to_vec(), 4096).unwrap();
            let bare = "n=alice,r=abcdefgh";
            let (_, sf) = Exchange::start(
                m,
                format!("n,,{bare}").as_bytes(),
                |_| Some(c.clone()),
                &mut |b| b.fill(9),
            )
            .unwrap();
            let cf = client_final(m, b"pw", bare, std::str::from_utf8(&sf).unwrap()).into_bytes();
            (c, bare.to_owned(), cf)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn fuzz_scram_messages_never_panic(
            first in proptest::collection::vec(any::<u8>(), 0..200),
            last in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let (c, _, _) = fixture();
            if let Ok((e, _)) = Exchange::start(Mechanism::Sha256, &first, |_| Some(c.clone()), &mut |b| b.fill(3)) {
                prop_assert!(e.finish(&last).is_err());
            }
        }

        #[test]
        fn fuzz_mutated_valid_exchanges_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        ) {
            let (c, bare, orig) = fixture();
            let (e, _) = Exchange::start(Mechanism::Sha256, format!("n,,{bare}").as_bytes(), |_| Some(c.clone()), &mut |b| b.fill(9)).unwrap();
            let mut cf = orig.clone();
            for (i, b) in edits {
                let n = cf.len();
                cf[i % n] = b;
            }
            // Unchanged bytes authenticate; any other outcome is an error,
            // never a panic.
            let r = e.finish(&cf);
            if &cf == orig {
                prop_assert!(r.is_ok());
            }
        }

        /// The client side reads the server's messages off the network
        /// (the CLI, the bench): any bytes as the server's messages are an
        /// error, never a panic (no proof goes out: a nonce that does not
        /// extend ours is refused before any key is derived).
        #[test]
        fn fuzz_scram_client_reads_any_bytes(
            junk in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let (mut client, _) = ClientExchange::start(Mechanism::Sha256, "alice", "pw", &mut |b| b.fill(5));
            prop_assert!(client.respond(&junk).is_err());
            prop_assert!(client.verify(&junk).is_err());
        }
    }

    proptest! {
        // Each case derives keys (4,096 PBKDF2 rounds, slow in debug
        // builds): few cases, and not among the `fuzz_` runs of 20,000.
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// A real server's messages, mutated: a proof goes out only for a
        /// server nonce that extends ours, and only the real server's
        /// final signature is accepted.
        #[test]
        fn the_scram_client_trusts_only_its_server(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            final_edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        ) {
            let m = Mechanism::Sha256;
            let stored = Credential::from_password(m, b"pw", b"salty-salt".to_vec(), 4096).unwrap();
            let (mut client, first) = ClientExchange::start(m, "alice", "pw", &mut |b| b.fill(5));
            let (server, server_first) =
                Exchange::start(m, &first, |_| Some(stored.clone()), &mut |b| b.fill(6)).unwrap();
            let mut sf = server_first.clone();
            for &(i, b) in &edits {
                let n = sf.len();
                sf[i % n] = b;
            }
            let nonce_of = |msg: &[u8]| {
                std::str::from_utf8(msg)
                    .ok()
                    .and_then(|m| m.split(',').next())
                    .and_then(|r| r.strip_prefix("r=").map(str::to_owned))
            };
            match client.respond(&sf) {
                Ok(client_final) => {
                    let nonce = nonce_of(&sf).unwrap_or_default();
                    prop_assert!(nonce.starts_with(&client.client_nonce));
                    prop_assert!(nonce.len() > client.client_nonce.len());
                    if sf == server_first {
                        // The final signature: the real one passes, a
                        // changed one not.
                        let (_, server_final) = server.finish(&client_final).unwrap();
                        let mut changed = server_final.clone();
                        for &(i, b) in &final_edits {
                            let n = changed.len();
                            changed[i % n] = b;
                        }
                        prop_assert_eq!(client.verify(&changed).is_ok(), changed == server_final);
                    }
                }
                Err(_) => prop_assert!(sf != server_first),
            }
        }
    }
}
