//! What facd says about itself in SIP headers: `Server`, `Allow`,
//! `Allow-Events` and `Accept`.

/// The methods facd implements (the `Allow` header, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, SUBSCRIBE";
/// The event packages facd notifies (RFC 6665 §8.2.2 `Allow-Events`): the
/// feature-key package of `feature_sync.rs` and the BLF lamps' `dialog`
/// (RFC 4235) and `presence` (RFC 3856).
pub const ALLOW_EVENTS: &str = "as-feature-event, dialog, presence";
/// The bodies facd understands (the `Accept` header, RFC 3261 §20.1).
pub const ACCEPT: &str = "application/sdp";
/// The `Server` header.
pub const SERVER: &str = concat!("facd/", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    #[test]
    fn allow_events_names_every_package() {
        use crate::sip::{dialog_info, feature_sync, pidf};
        let listed: Vec<&str> = super::ALLOW_EVENTS.split(", ").collect();
        assert_eq!(
            listed,
            [feature_sync::EVENT, dialog_info::EVENT, pidf::EVENT]
        );
    }
}
