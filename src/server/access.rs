//! Who may write: the one rule behind the API's bearer check and the page's key field.
//!
//! Owns: "with a key set, a write must present it; without one, writes are only accepted
//! on a loopback address", and the constant-time comparison. Must not: know where the
//! key came from (a header, a form field) or word the refusal: each transport says it
//! in its own terms.

use subtle::ConstantTimeEq;

use super::AppState;

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteRefusal {
    /// No key is set and the server listens on a non-loopback address.
    NoKeyOffLoopback,
    /// A key is set and the write presented none.
    MissingKey,
    /// A key is set and the write presented another.
    WrongKey,
}

/// Whether a write presenting `key` (already trimmed; `None` when it sent none) may go on.
pub(crate) fn check_write(state: &AppState, key: Option<&str>) -> Result<(), WriteRefusal> {
    let Some(expected) = state.api_key() else {
        return if state.is_loopback() {
            Ok(())
        } else {
            Err(WriteRefusal::NoKeyOffLoopback)
        };
    };
    match key {
        None => Err(WriteRefusal::MissingKey),
        // Constant-time so the comparison does not tell how much of a guess was right.
        Some(key) if bool::from(key.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        Some(_) => Err(WriteRefusal::WrongKey),
    }
}

/// Whether writes are switched off altogether (no key, not on loopback): the page then
/// hides its publish form.
pub(crate) fn writes_disabled(state: &AppState) -> bool {
    state.api_key().is_none() && !state.is_loopback()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::server::ServeSettings;

    fn state(key: Option<&str>, addr: [u8; 4]) -> AppState {
        let state = AppState::new(&ServeSettings {
            api_key: key.map(str::to_owned),
            ..ServeSettings::default()
        });
        state.set_local_addr(SocketAddr::from((addr, 8080)));
        state
    }

    #[test]
    fn without_a_key_only_loopback_may_write() {
        assert_eq!(check_write(&state(None, [127, 0, 0, 1]), None), Ok(()));
        assert_eq!(
            check_write(&state(None, [10, 0, 0, 1]), Some("anything")),
            Err(WriteRefusal::NoKeyOffLoopback)
        );
    }

    #[test]
    fn with_a_key_every_address_must_present_it() {
        for addr in [[127, 0, 0, 1], [10, 0, 0, 1]] {
            let s = state(Some("k3y"), addr);
            assert_eq!(check_write(&s, Some("k3y")), Ok(()));
            assert_eq!(check_write(&s, None), Err(WriteRefusal::MissingKey));
            assert_eq!(check_write(&s, Some("k3")), Err(WriteRefusal::WrongKey));
        }
    }
}
