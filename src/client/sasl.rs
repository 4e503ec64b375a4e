//! SASL for the bundled clients on the native listener (`serve
//! --native-sasl-enabled-mechanisms`): the process-wide login (`use_sasl`,
//! from the CLI's and the bench's `--sasl-mechanism`), which
//! `Client::connect` makes on every connection before its first request.
//!
//! Must never: print or log the password (`Login`'s Debug leaves it out).

use std::sync::OnceLock;

use crate::security::sasl::SaslMechanism;

/// Who to log in as, and how.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("mechanism", &self.mechanism.name())
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

static LOGIN: OnceLock<Login> = OnceLock::new();

/// Every connection this process opens from now on logs in as `login`.
/// Once per process.
pub fn use_sasl(login: Login) -> Result<(), String> {
    LOGIN
        .set(login)
        .map_err(|_| "SASL is chosen once per process".to_owned())
}

/// The login chosen for this process, if any.
pub fn chosen() -> Option<&'static Login> {
    LOGIN.get()
}
