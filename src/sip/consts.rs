//! What facd says about itself in SIP headers: `Server`, `Allow`,
//! `Allow-Events` and `Accept`.

/// The methods facd implements (the `Allow` header, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, SUBSCRIBE";
/// The event packages facd notifies (RFC 6665 §8.2.2 `Allow-Events`): the
/// feature-key package of `feature_sync.rs`.
pub const ALLOW_EVENTS: &str = "as-feature-event";
/// The bodies facd understands (the `Accept` header, RFC 3261 §20.1).
pub const ACCEPT: &str = "application/sdp";
/// The `Server` header.
pub const SERVER: &str = concat!("facd/", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    #[test]
    fn allow_events_names_the_feature_key_package() {
        assert_eq!(super::ALLOW_EVENTS, crate::sip::feature_sync::EVENT);
    }
}
