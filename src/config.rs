//! The configuration file (`config.toml`): serde types with
//! `deny_unknown_fields`, defaults, and [`Config::validate`], which reports
//! every problem with the key that is wrong (SPEC §8) and keeps what it
//! parsed as typed [`Settings`] (addresses, networks, algorithms, roles), so
//! nothing is parsed or compared as text again.
//!
//! This module only reads and checks; it opens no sockets and starts nothing.

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::limits::IpNet;

mod keys;
mod plain;
mod split;

/// A repeatable pseudo-random pick in `0..n` (xorshift64), for the tests
/// that generate texts (`split`, `plain`).
#[cfg(test)]
fn picker(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub sip: SipConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub codes: CodesConfig,
    #[serde(default)]
    pub reasons: Vec<ReasonConfig>,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub subscribe: SubscribeConfig,
    #[serde(default)]
    pub feature_keys: FeatureKeysConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub api_users: Vec<ApiUserConfig>,
    #[serde(default)]
    pub queues: Vec<QueueConfig>,
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// `[[trusted_proxies]]`: proxies whose requests identify the agent by
    /// P-Asserted-Identity (RFC 3325) without a challenge.
    #[serde(default)]
    pub trusted_proxies: Vec<TrustedProxyConfig>,
    #[serde(default)]
    pub log: LogConfig,
    /// What validation parsed: filled by [`Config::load`] and
    /// [`Config::from_toml`], empty on a configuration only deserialized.
    #[serde(skip)]
    settings: Settings,
}

/// The text values of the configuration as validation parsed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `sip.listen`, in order.
    pub listeners: Vec<Listen>,
    /// `http.listen`.
    pub http_listen: Option<SocketAddr>,
    /// `auth.algorithms`, in order of preference.
    pub algorithms: Vec<DigestAlgorithm>,
    /// `limits.exempt_sources`.
    pub exempt_sources: Vec<IpNet>,
    /// `api_users`, in order, with their roles.
    pub api_users: Vec<ApiUser>,
    /// `trusted_proxies[].address`, in order.
    pub trusted_proxies: Vec<IpNet>,
}

/// A digest algorithm offered (`auth.algorithms`; RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// `"SHA-256"`.
    Sha256,
    /// `"MD5"`.
    Md5,
}

impl DigestAlgorithm {
    /// The name as written in the file.
    fn parse(s: &str) -> Option<Self> {
        match s {
            "SHA-256" => Some(Self::Sha256),
            "MD5" => Some(Self::Md5),
            _ => None,
        }
    }
}

/// An API user (`[[api_users]]`) once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUser {
    /// Its name (a `/wsi` login).
    pub name: String,
    /// Its static bearer token (also accepted as its password), if any.
    pub token: Option<String>,
    /// Its password for `POST /api/login` and `/wsi`, if any.
    pub password: Option<String>,
    /// What it may do.
    pub role: ApiRole,
}

/// The role of an API user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRole {
    /// `role = "admin"`: everything.
    Admin,
    /// `role = "agent"` with its `extension`: that agent only.
    Agent(String),
}

/// `[sip]`: listeners and SIP behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// `"udp:127.0.0.1:5060"`, `"tcp:[::1]:5060"`, …
    pub listen: Vec<String>,
    /// Digest realm and host part of our Contact.
    pub domain: String,
    /// Milliseconds between the caller's ACK and facd's BYE, filled with the
    /// confirmation tone (0 = no tone).
    pub confirm_ms: u64,
    /// Largest SIP message accepted, in bytes (UDP datagram or TCP frame).
    pub max_message_bytes: usize,
    /// Cap on open TCP connections.
    pub max_tcp_connections: usize,
    /// A TCP connection with no traffic for this long is closed.
    pub tcp_idle_secs: u64,
    /// A TCP message must arrive whole within this many seconds of its first byte.
    pub tcp_message_secs: u64,
    /// SO_RCVBUF requested for UDP sockets.
    pub udp_recv_buffer_bytes: usize,
    /// RFC 3261 T1 in milliseconds (default 500).
    pub t1_ms: u64,
    /// PEM certificate chain for `tls:` and `wss:` listeners (and the
    /// client certificate facd shows when it opens a TLS connection).
    pub tls_cert: Option<String>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<String>,
    /// PEM CA certificates: when set, TLS clients must present a
    /// certificate issued by one of them, and the phones facd connects to
    /// are verified against them.
    pub tls_client_ca: Option<String>,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: vec!["udp:127.0.0.1:5060".into(), "tcp:127.0.0.1:5060".into()],
            domain: "facd.local".into(),
            confirm_ms: 1000,
            max_message_bytes: 65536,
            max_tcp_connections: 8192,
            tcp_idle_secs: 120,
            tcp_message_secs: 10,
            udp_recv_buffer_bytes: 4 << 20,
            t1_ms: 500,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// false: trust the From user (lab use only).
    pub required: bool,
    /// Digest algorithms offered, in order of preference (RFC 8760 §2.4).
    /// Some clients (SIPp, older phones) answer only the first challenge.
    pub algorithms: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            required: true,
            algorithms: vec!["SHA-256".into(), "MD5".into()],
        }
    }
}

/// `[codes]`: the star codes (SPEC §3) and the toggle codes (issue 14).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodesConfig {
    pub ready: String,
    pub not_ready: String,
    pub login: String,
    pub logout: String,
    /// Logs in where logged out, else out (`*45[queue]`); BLF lit while logged in.
    pub toggle_login: String,
    /// READY ↔ NOT_READY (`*46[queue]`); BLF lit while READY.
    pub toggle_ready: String,
}

impl Default for CodesConfig {
    fn default() -> Self {
        Self {
            ready: "*36".into(),
            not_ready: "*37".into(),
            login: "*38".into(),
            logout: "*39".into(),
            toggle_login: "*45".into(),
            toggle_ready: "*46".into(),
        }
    }
}

/// `[feature_keys]`: phone keys beyond the ACD key (issue 14).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureKeysConfig {
    /// The `[[reasons]]` name a phone's DND key sets (NOT_READY with it in
    /// every queue); unset: DND keys are refused `403`.
    pub dnd_reason: Option<String>,
}

/// `[[reasons]]`: a not-ready reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonConfig {
    pub code: u32,
    pub name: String,
}

/// `[limits]`: abuse limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Failed digest authentications a source IP may make within the window.
    pub auth_failures: u32,
    /// The window, in seconds.
    pub auth_window_secs: u64,
    /// How long a source over the limit is ignored, in seconds.
    pub auth_ban_secs: u64,
    /// Messages per second a source IP may send, sustained (token bucket).
    pub requests_per_sec: u32,
    /// Messages a quiet source IP may send at once (the bucket size).
    pub request_burst: u32,
    /// Open TCP connections per source IP.
    pub tcp_connections_per_ip: u32,
    /// Addresses or networks (`"10.0.0.5"`, `"10.0.0.0/8"`) exempt from the
    /// request rate and the per-IP connection cap: a PBX or proxy in front.
    pub exempt_sources: Vec<String>,
    /// Loopback sources (127.0.0.0/8, ::1: this host) skip the same two
    /// limits.
    pub exempt_loopback: bool,
    /// Live server transactions at most; new requests beyond get 503.
    pub max_transactions: usize,
    /// Answered star-code calls (dialogs) at most; new calls beyond get 503.
    pub max_dialogs: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            auth_failures: 5,
            auth_window_secs: 60,
            auth_ban_secs: 300,
            requests_per_sec: 500,
            request_burst: 1000,
            tcp_connections_per_ip: 2048,
            exempt_sources: Vec::new(),
            exempt_loopback: true,
            max_transactions: 500_000,
            max_dialogs: 200_000,
        }
    }
}

/// `[subscribe]`: feature-key subscriptions (`as-feature-event`, SPEC §5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubscribeConfig {
    /// Shorter `Expires` get `423 Interval Too Brief` (seconds).
    pub min_expires: u32,
    /// Longer `Expires` are cut to this (seconds).
    pub max_expires: u32,
    /// Granted when a SUBSCRIBE has no `Expires` (seconds).
    pub default_expires: u32,
    /// Cap on live subscriptions; beyond it new ones get `503`.
    pub max_subscriptions: usize,
    /// Subscriptions one agent may hold; a new one ends its oldest.
    pub max_per_agent: usize,
}

impl Default for SubscribeConfig {
    fn default() -> Self {
        Self {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_subscriptions: 100_000,
            // 40 BLF keys and the feature-key subscription of one phone,
            // with room for a rebooted phone's stale dialogs.
            max_per_agent: 48,
        }
    }
}

/// Where the journal lives (`storage.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Our own file journal (length + CRC records) and snapshot file.
    #[default]
    Journal,
    /// An embedded redb database (measured against the journal; see README).
    Redb,
    /// PostgreSQL (`storage.url`), shared by several facd nodes.
    Postgres,
}

/// `storage.url`: a PostgreSQL connection string (`postgres://user:pass@host/db`
/// or `host=… user=…`). Its Debug form hides the password, so it never
/// reaches a log.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DbUrl(pub String);

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_password(&self.0))
    }
}

/// `url` with the password of a `scheme://user:password@host` URL or of a
/// `password=…` key replaced by `***`, for logs.
pub fn redact_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let Some((auth, host)) = rest.rsplit_once('@') else {
            return url.to_string();
        };
        return match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        };
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `storage.group_commit_ms` when unset.
pub const DEFAULT_GROUP_COMMIT_MS: u32 = 2;
/// The most `storage.group_commit_ms` may be.
pub const MAX_GROUP_COMMIT_MS: u32 = 100;

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Journal and snapshots.
    pub dir: PathBuf,
    /// fdatasync before answering (false: faster, not crash-safe; benchmarks only).
    pub sync: bool,
    /// `"journal"` (our file journal, the default), `"redb"` or `"postgres"`.
    pub backend: Backend,
    /// With `backend = "postgres"` only (and then required): the database.
    pub url: Option<DbUrl>,
    /// Days of agent-state change history kept under `dir/history/`
    /// (0 = keep everything).
    pub history_days: u32,
    /// Least milliseconds between two journal syncs (group commit): under
    /// load one `fdatasync` covers every change of the interval, at the
    /// cost of up to this much more before the answer. 0 syncs as soon as
    /// the previous sync has ended.
    pub group_commit_ms: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            dir: "data".into(),
            sync: true,
            backend: Backend::Journal,
            url: None,
            history_days: 90,
            group_commit_ms: DEFAULT_GROUP_COMMIT_MS,
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    /// PEM certificate chain: when set (with `tls_key`), `listen` serves
    /// HTTPS and WSS only.
    pub tls_cert: Option<String>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[[api_users]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiUserConfig {
    pub name: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    pub role: String,
    #[serde(default)]
    pub extension: Option<String>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `RUST_LOG`-style filter (`"info"`, `"warn,facd=debug"`); absent:
    /// `RUST_LOG`, else `"info"`. Changed by a reload.
    pub level: Option<String>,
}

/// `[[trusted_proxies]]`: a proxy (Kamailio, OpenSIPS, a PBX) that has
/// authenticated the phones itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedProxyConfig {
    /// An address or network: `"10.0.0.5"`, `"10.0.0.0/24"`, `"2001:db8::/64"`.
    pub address: String,
}

/// `[[queues]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub number: String,
    pub name: String,
    #[serde(default = "yes")]
    pub auto_ready: bool,
    #[serde(default)]
    pub wrap_up_secs: u64,
    #[serde(default)]
    pub not_ready_after_other_call: bool,
}

fn yes() -> bool {
    true
}

/// `[[agents]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub extension: String,
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub ha1: Option<String>,
    #[serde(default)]
    pub ha1_sha256: Option<String>,
    #[serde(default)]
    pub queues: Vec<String>,
}

/// A listener address from `[sip] listen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub proto: ListenProto,
    pub addr: SocketAddr,
}

/// The transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenProto {
    Udp,
    Tcp,
    /// SIP over TLS (RFC 3261 §26).
    Tls,
    /// SIP over WebSocket (RFC 7118).
    Ws,
    /// SIP over secure WebSocket (RFC 7118).
    Wss,
}

impl ListenProto {
    /// As written in `[sip] listen`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }
}

/// One configuration problem: the key that is wrong and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded: every problem found.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn render(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![err(
                path.display().to_string(),
                format!("cannot read configuration file: {e}"),
            )])
        })?;
        Self::from_toml(&text)
    }

    /// Parses and validates configuration text. The `[[agents]]` tables are
    /// parsed a slice at a time ([`split`]), so a file of 100,000 agents does
    /// not need ten times its size in parser memory; any error is reported
    /// from a parse of the whole text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        match split::parse(text) {
            Some(c) => c,
            None => Self::parse_whole(text)?,
        }
        .checked()
    }

    /// Validates a parsed configuration and keeps its [`Settings`].
    fn checked(mut self) -> Result<Self, ConfigErrors> {
        let (settings, problems) = self.check();
        if problems.is_empty() {
            self.settings = settings;
            Ok(self)
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// Parses configuration text in one piece with the toml crate.
    fn parse_whole(text: &str) -> Result<Self, ConfigErrors> {
        toml::from_str(text).map_err(|e| {
            if let Some(all) = keys::all_problems(text) {
                return all;
            }
            let key = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "config".into());
            ConfigErrors(vec![err(key, e.message().trim().to_string())])
        })
    }

    /// The log filter: `log.level`, else `RUST_LOG`, else `"info"`.
    pub fn log_level(&self) -> String {
        self.log
            .level
            .clone()
            .or_else(|| {
                std::env::var("RUST_LOG")
                    .ok()
                    .filter(|v| !v.trim().is_empty())
            })
            .unwrap_or_else(|| "info".into())
    }

    /// What validation parsed (empty unless loaded by [`Config::load`] or
    /// [`Config::from_toml`]).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The parsed `[sip] listen` entries.
    pub fn listeners(&self) -> Vec<Listen> {
        self.settings.listeners.clone()
    }

    /// Every problem in the configuration, each with its key.
    pub fn validate(&self) -> Vec<ConfigError> {
        self.check().1
    }

    /// Checks everything once: what parsed, and every problem.
    fn check(&self) -> (Settings, Vec<ConfigError>) {
        let mut e = Vec::new();
        let listeners = self.validate_sip(&mut e);
        self.validate_codes(&mut e);
        self.validate_reasons(&mut e);
        if let Some(dnd) = &self.feature_keys.dnd_reason {
            if !self.reasons.iter().any(|r| &r.name == dnd) {
                e.push(err(
                    "feature_keys.dnd_reason",
                    format!("{dnd:?} is not a configured [[reasons]] name"),
                ));
            }
        }
        let queues = self.validate_queues(&mut e);
        let agents = self.validate_agents(&queues, &mut e);
        let api_users = self.validate_api_users(&agents, &mut e);
        self.validate_subscribe(&mut e);
        if self.limits.auth_failures == 0 {
            e.push(err("limits.auth_failures", "must be at least 1"));
        }
        if self.limits.auth_window_secs == 0 {
            e.push(err("limits.auth_window_secs", "must be at least 1"));
        }
        let exempt_sources = self.validate_limits(&mut e);
        if let Some(level) = &self.log.level {
            if let Err(why) = tracing_subscriber::EnvFilter::try_new(level) {
                e.push(err(
                    "log.level",
                    format!("{level:?} is not a log filter: {why}"),
                ));
            }
        }
        let mut trusted_proxies = Vec::new();
        for (i, p) in self.trusted_proxies.iter().enumerate() {
            match IpNet::parse(&p.address) {
                Ok(net) => trusted_proxies.push(net),
                Err(why) => e.push(err(
                    format!("trusted_proxies[{i}].address"),
                    why.to_string(),
                )),
            }
        }
        if self.auth.algorithms.is_empty() {
            e.push(err(
                "auth.algorithms",
                "offer at least one of \"SHA-256\", \"MD5\"",
            ));
        }
        let mut algorithms = Vec::new();
        for (i, a) in self.auth.algorithms.iter().enumerate() {
            match DigestAlgorithm::parse(a) {
                Some(alg) => algorithms.push(alg),
                None => e.push(err(
                    format!("auth.algorithms[{i}]"),
                    format!("{a:?} must be \"SHA-256\" or \"MD5\""),
                )),
            }
        }
        if self.storage.history_days > 36500 {
            e.push(err(
                "storage.history_days",
                "must be at most 36500 (0 keeps everything)",
            ));
        }
        if self.storage.group_commit_ms > MAX_GROUP_COMMIT_MS {
            e.push(err(
                "storage.group_commit_ms",
                format!(
                    "must be at most {MAX_GROUP_COMMIT_MS} (every star code's answer may wait this long)"
                ),
            ));
        }
        if self.storage.dir.as_os_str().is_empty() {
            e.push(err("storage.dir", "must not be empty"));
        }
        match (&self.storage.backend, &self.storage.url) {
            (Backend::Postgres, None) => e.push(err(
                "storage.url",
                "is required with backend = \"postgres\" (postgres://user:password@host:port/database)",
            )),
            (Backend::Postgres, Some(DbUrl(url))) => {
                if let Err(problem) = url.parse::<tokio_postgres::Config>() {
                    e.push(err(
                        "storage.url",
                        format!("is not a PostgreSQL connection string: {problem}"),
                    ));
                }
            }
            (_, Some(_)) => e.push(err(
                "storage.url",
                "is only used with backend = \"postgres\"",
            )),
            (_, None) => {}
        }
        tls_pair(
            "http",
            &self.http.tls_cert,
            &self.http.tls_key,
            None,
            &mut e,
        );
        let http_listen = self.http.listen.parse::<SocketAddr>().ok();
        if http_listen.is_none() {
            e.push(err(
                "http.listen",
                format!(
                    "{:?} is not an address:port such as \"127.0.0.1:8080\"",
                    self.http.listen
                ),
            ));
        }
        let settings = Settings {
            listeners,
            http_listen,
            algorithms,
            exempt_sources,
            api_users,
            trusted_proxies,
        };
        (settings, e)
    }

    fn validate_subscribe(&self, e: &mut Vec<ConfigError>) {
        let s = &self.subscribe;
        if !(1..=86_400).contains(&s.min_expires) {
            e.push(err(
                "subscribe.min_expires",
                "must be between 1 and 86400 seconds",
            ));
        }
        if !(1..=86_400).contains(&s.max_expires) {
            e.push(err(
                "subscribe.max_expires",
                "must be between 1 and 86400 seconds",
            ));
        } else if s.max_expires < s.min_expires {
            e.push(err(
                "subscribe.max_expires",
                format!("must be at least min_expires ({})", s.min_expires),
            ));
        }
        if s.default_expires < s.min_expires || s.default_expires > s.max_expires {
            e.push(err(
                "subscribe.default_expires",
                format!(
                    "must be between min_expires ({}) and max_expires ({})",
                    s.min_expires, s.max_expires
                ),
            ));
        }
        if s.max_subscriptions == 0 {
            e.push(err("subscribe.max_subscriptions", "must be at least 1"));
        }
        if !(1..=100).contains(&s.max_per_agent) {
            e.push(err("subscribe.max_per_agent", "must be between 1 and 100"));
        }
    }

    fn validate_sip(&self, e: &mut Vec<ConfigError>) -> Vec<Listen> {
        let sip = &self.sip;
        if sip.listen.is_empty() {
            e.push(err("sip.listen", "at least one listener is required"));
        }
        let mut listeners = Vec::new();
        let mut seen = HashSet::new();
        for (i, l) in sip.listen.iter().enumerate() {
            match parse_listen(l) {
                Ok(parsed) => {
                    if !seen.insert((parsed.proto, parsed.addr)) {
                        e.push(err(
                            format!("sip.listen[{i}]"),
                            format!("{l:?} is listed twice"),
                        ));
                    }
                    listeners.push(parsed);
                }
                Err(m) => e.push(err(format!("sip.listen[{i}]"), m)),
            }
        }
        if sip.domain.trim().is_empty() || sip.domain.contains(char::is_whitespace) {
            e.push(err("sip.domain", "must be a host name without spaces"));
        }
        if !(1024..=16 << 20).contains(&sip.max_message_bytes) {
            e.push(err(
                "sip.max_message_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        if sip.confirm_ms > 60_000 {
            e.push(err("sip.confirm_ms", "must be at most 60000 (one minute)"));
        }
        if sip.max_tcp_connections == 0 {
            e.push(err("sip.max_tcp_connections", "must be at least 1"));
        }
        if sip.tcp_idle_secs == 0 {
            e.push(err("sip.tcp_idle_secs", "must be at least 1"));
        }
        if sip.tcp_message_secs == 0 {
            e.push(err("sip.tcp_message_secs", "must be at least 1"));
        }
        if !(50..=5000).contains(&sip.t1_ms) {
            e.push(err("sip.t1_ms", "must be between 50 and 5000"));
        }
        let secure = listeners
            .iter()
            .any(|l| matches!(l.proto, ListenProto::Tls | ListenProto::Wss));
        tls_pair(
            "sip",
            &sip.tls_cert,
            &sip.tls_key,
            secure.then_some("a tls: or wss: listener"),
            e,
        );
        if let Some(ca) = &sip.tls_client_ca {
            if sip.tls_cert.is_none() {
                e.push(err(
                    "sip.tls_client_ca",
                    "needs sip.tls_cert and sip.tls_key",
                ));
            }
            if let Err(why) = std::fs::metadata(ca) {
                e.push(err(
                    "sip.tls_client_ca",
                    format!("cannot read {ca:?}: {why}"),
                ));
            }
        }
        listeners
    }

    fn validate_limits(&self, e: &mut Vec<ConfigError>) -> Vec<IpNet> {
        let l = &self.limits;
        for (key, v) in [
            ("limits.requests_per_sec", u64::from(l.requests_per_sec)),
            ("limits.request_burst", u64::from(l.request_burst)),
            (
                "limits.tcp_connections_per_ip",
                u64::from(l.tcp_connections_per_ip),
            ),
            ("limits.max_transactions", l.max_transactions as u64),
            ("limits.max_dialogs", l.max_dialogs as u64),
        ] {
            if v == 0 {
                e.push(err(key, "must be at least 1"));
            }
        }
        let mut exempt = Vec::new();
        for (i, s) in l.exempt_sources.iter().enumerate() {
            match IpNet::parse(s) {
                Ok(net) => exempt.push(net),
                Err(why) => e.push(err(format!("limits.exempt_sources[{i}]"), why.to_string())),
            }
        }
        exempt
    }

    fn validate_codes(&self, e: &mut Vec<ConfigError>) {
        let c = &self.codes;
        let codes = [
            ("codes.ready", &c.ready),
            ("codes.not_ready", &c.not_ready),
            ("codes.login", &c.login),
            ("codes.logout", &c.logout),
            ("codes.toggle_login", &c.toggle_login),
            ("codes.toggle_ready", &c.toggle_ready),
        ];
        for (key, code) in codes {
            if code.is_empty() || code.len() > 8 {
                e.push(err(key, "must be 1 to 8 characters long"));
            } else if !code
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
            {
                e.push(err(
                    key,
                    format!("{code:?} may contain only digits, '*' and '#'"),
                ));
            } else if code.ends_with(|ch: char| ch.is_ascii_digit()) && code.len() < 2 {
                e.push(err(key, format!("{code:?} is too short")));
            }
        }
        for (i, (ka, a)) in codes.iter().enumerate() {
            for (kb, b) in codes.iter().skip(i + 1) {
                if a.is_empty() || b.is_empty() {
                    continue;
                }
                if a == b {
                    e.push(err(*kb, format!("{b:?} is the same code as {ka}")));
                } else if b.starts_with(a.as_str()) {
                    e.push(err(*ka, format!("{a:?} is a prefix of {kb} = {b:?}")));
                } else if a.starts_with(b.as_str()) {
                    e.push(err(*kb, format!("{b:?} is a prefix of {ka} = {a:?}")));
                }
            }
        }
    }

    fn validate_reasons(&self, e: &mut Vec<ConfigError>) {
        let mut codes = HashSet::new();
        let mut names = HashSet::new();
        for (i, r) in self.reasons.iter().enumerate() {
            if !(1..=9999).contains(&r.code) {
                e.push(err(
                    format!("reasons[{i}].code"),
                    "must be 1 to 9999 (1–4 digits)",
                ));
            } else if !codes.insert(r.code) {
                e.push(err(
                    format!("reasons[{i}].code"),
                    format!("duplicate reason code {}", r.code),
                ));
            }
            if r.name.is_empty()
                || !r
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                e.push(err(
                    format!("reasons[{i}].name"),
                    format!("{:?} must be upper-case letters, digits and '_'", r.name),
                ));
            } else if is_state_name(&r.name) {
                e.push(err(
                    format!("reasons[{i}].name"),
                    format!("{:?} is a state name and cannot be a reason", r.name),
                ));
            } else if !names.insert(r.name.as_str()) {
                e.push(err(
                    format!("reasons[{i}].name"),
                    format!("duplicate reason name {:?}", r.name),
                ));
            }
        }
    }

    fn validate_queues(&self, e: &mut Vec<ConfigError>) -> HashSet<&str> {
        let mut numbers = HashSet::new();
        for (i, q) in self.queues.iter().enumerate() {
            if !is_queue_number(&q.number) {
                e.push(err(
                    format!("queues[{i}].number"),
                    format!("{:?} must be 1 to 10 digits", q.number),
                ));
            } else if !numbers.insert(q.number.as_str()) {
                e.push(err(
                    format!("queues[{i}].number"),
                    format!("duplicate queue number {:?}", q.number),
                ));
            }
            if q.name.trim().is_empty() {
                e.push(err(format!("queues[{i}].name"), "must not be empty"));
            }
            if q.wrap_up_secs > 86_400 {
                e.push(err(
                    format!("queues[{i}].wrap_up_secs"),
                    "must be at most 86400 (one day)",
                ));
            }
        }
        numbers
    }

    fn validate_agents(&self, queues: &HashSet<&str>, e: &mut Vec<ConfigError>) -> HashSet<&str> {
        let mut extensions = HashSet::with_capacity(self.agents.len());
        for (i, a) in self.agents.iter().enumerate() {
            let key = |k: &str| format!("agents[{i}].{k}");
            if a.extension.is_empty()
                || a.extension.len() > 32
                || !a
                    .extension
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                e.push(err(
                    key("extension"),
                    format!(
                        "{:?} must be 1 to 32 letters, digits, '-', '_' or '.'",
                        a.extension
                    ),
                ));
            } else if a.extension.starts_with('*') {
                e.push(err(key("extension"), "must not start with '*'"));
            } else if !extensions.insert(a.extension.as_str()) {
                e.push(err(
                    key("extension"),
                    format!("duplicate extension {:?}", a.extension),
                ));
            }
            let secrets = [&a.password, &a.ha1, &a.ha1_sha256]
                .iter()
                .filter(|s| s.is_some())
                .count();
            if secrets > 1 {
                e.push(err(
                    key("password"),
                    "give only one of password, ha1, ha1_sha256",
                ));
            } else if secrets == 0 && self.auth.required {
                e.push(err(
                    key("password"),
                    "a password, ha1 or ha1_sha256 is required when auth.required = true",
                ));
            }
            if let Some(h) = &a.ha1 {
                if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    e.push(err(key("ha1"), "must be 32 hex digits (MD5)"));
                }
            }
            if let Some(h) = &a.ha1_sha256 {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    e.push(err(key("ha1_sha256"), "must be 64 hex digits (SHA-256)"));
                }
            }
            // An agent has a few queues: a list is cheaper than a set.
            let mut member: Vec<&str> = Vec::with_capacity(a.queues.len());
            for (j, q) in a.queues.iter().enumerate() {
                if !queues.contains(q.as_str()) {
                    e.push(err(
                        format!("agents[{i}].queues[{j}]"),
                        format!("unknown queue {q:?}"),
                    ));
                } else if member.contains(&q.as_str()) {
                    e.push(err(
                        format!("agents[{i}].queues[{j}]"),
                        format!("queue {q:?} is listed twice"),
                    ));
                } else {
                    member.push(q.as_str());
                }
            }
        }
        extensions
    }

    fn validate_api_users(&self, agents: &HashSet<&str>, e: &mut Vec<ConfigError>) -> Vec<ApiUser> {
        let mut users = Vec::new();
        let mut names = HashMap::new();
        for (i, u) in self.api_users.iter().enumerate() {
            let key = |k: &str| format!("api_users[{i}].{k}");
            if u.name.is_empty() {
                e.push(err(key("name"), "must not be empty"));
            } else if names.insert(u.name.as_str(), i).is_some() {
                e.push(err(key("name"), format!("duplicate API user {:?}", u.name)));
            }
            match (&u.token, &u.password) {
                (None, None) => e.push(err(key("token"), "needs a token or a password (or both)")),
                (Some(t), _) if t.len() < 8 => {
                    e.push(err(key("token"), "must be at least 8 characters"))
                }
                (_, Some(p)) if p.len() < 8 => {
                    e.push(err(key("password"), "must be at least 8 characters"))
                }
                _ => {}
            }
            let role = match (u.role.as_str(), &u.extension) {
                ("admin", None) => Some(ApiRole::Admin),
                ("admin", Some(_)) => {
                    e.push(err(
                        key("extension"),
                        "only an \"agent\" API user has an extension",
                    ));
                    None
                }
                ("agent", Some(x)) if agents.contains(x.as_str()) => {
                    Some(ApiRole::Agent(x.clone()))
                }
                ("agent", Some(x)) => {
                    e.push(err(key("extension"), format!("unknown agent {x:?}")));
                    None
                }
                ("agent", None) => {
                    e.push(err(
                        key("extension"),
                        "an \"agent\" API user needs an extension",
                    ));
                    None
                }
                (r, _) => {
                    e.push(err(
                        key("role"),
                        format!("{r:?} must be \"admin\" or \"agent\""),
                    ));
                    None
                }
            };
            if let Some(role) = role {
                users.push(ApiUser {
                    name: u.name.clone(),
                    token: u.token.clone(),
                    password: u.password.clone(),
                    role,
                });
            }
        }
        users
    }
}

/// True for the state names that the REST API accepts as a status.
fn is_state_name(s: &str) -> bool {
    matches!(
        s,
        "READY"
            | "NOT_READY"
            | "WRAP_UP"
            | "LOGGED_IN"
            | "LOGGED_OUT"
            | "QUEUE_CALL"
            | "OTHER_CALL"
    )
}

/// 1 to 10 ASCII digits (SPEC §3).
pub fn is_queue_number(s: &str) -> bool {
    (1..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `<section>.tls_cert` and `tls_key` come together, name readable files,
/// and are there when `needed_by` says something needs them.
fn tls_pair(
    section: &str,
    cert: &Option<String>,
    key: &Option<String>,
    needed_by: Option<&str>,
    e: &mut Vec<ConfigError>,
) {
    match (cert, key) {
        (None, None) => {
            if let Some(what) = needed_by {
                e.push(err(
                    format!("{section}.tls_cert"),
                    format!("{what} needs {section}.tls_cert and {section}.tls_key"),
                ));
            }
        }
        (Some(_), None) => e.push(err(format!("{section}.tls_key"), "is missing")),
        (None, Some(_)) => e.push(err(format!("{section}.tls_cert"), "is missing")),
        (Some(_), Some(_)) => {}
    }
    for (name, path) in [("tls_cert", cert), ("tls_key", key)] {
        if let Some(path) = path {
            if let Err(why) = std::fs::metadata(path) {
                e.push(err(
                    format!("{section}.{name}"),
                    format!("cannot read {path:?}: {why}"),
                ));
            }
        }
    }
}

/// Parses `"udp:127.0.0.1:5060"` / `"tcp:[::1]:5060"` / `"tls:…"`, `"ws:…"`, `"wss:…"`.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    let (proto, addr) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} must look like \"udp:127.0.0.1:5060\""))?;
    let proto = match proto.to_ascii_lowercase().as_str() {
        "udp" => ListenProto::Udp,
        "tcp" => ListenProto::Tcp,
        "tls" => ListenProto::Tls,
        "ws" => ListenProto::Ws,
        "wss" => ListenProto::Wss,
        other => {
            return Err(format!(
                "unknown transport {other:?} in {s:?} (udp, tcp, tls, ws or wss)"
            ))
        }
    };
    let addr = addr.parse::<SocketAddr>().map_err(|_| {
        format!("{addr:?} in {s:?} is not an address:port (IPv6 in brackets: \"[::1]:5060\")")
    })?;
    Ok(Listen { proto, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[sip]
listen = ["udp:127.0.0.1:5060", "tcp:[::1]:5060"]
domain = "pbx.example.com"
[auth]
required = false
[[reasons]]
code = 1
name = "BREAK"
[[queues]]
number = "8000"
name = "Sales"
[[queues]]
number = "8001"
name = "Support"
auto_ready = false
wrap_up_secs = 30
[[agents]]
extension = "1001"
name = "Alice"
password = "secret"
queues = ["8000", "8001"]
[[api_users]]
name = "admin"
token = "change-me-please"
role = "admin"
"#;

    fn keys(text: &str) -> Vec<String> {
        match Config::from_toml(text) {
            Ok(_) => vec![],
            Err(ConfigErrors(v)) => v.into_iter().map(|e| e.key).collect(),
        }
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let c = Config::from_toml(GOOD).unwrap();
        assert_eq!(c.listeners().len(), 2);
        assert_eq!(c.listeners()[1].addr, "[::1]:5060".parse().unwrap());
        assert!(c.queues[0].auto_ready);
        assert!(!c.queues[1].auto_ready);
        assert_eq!(c.codes.login, "*38");
        assert_eq!(c.sip.max_message_bytes, 65536);
    }

    #[test]
    fn validation_keeps_what_it_parsed() {
        let c = Config::from_toml(GOOD).unwrap();
        let s = c.settings();
        assert_eq!(s.listeners, c.listeners());
        assert_eq!(s.http_listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(
            s.algorithms,
            [DigestAlgorithm::Sha256, DigestAlgorithm::Md5]
        );
        assert!(s.exempt_sources.is_empty());
        assert_eq!(
            s.api_users,
            [ApiUser {
                name: "admin".into(),
                token: Some("change-me-please".into()),
                password: None,
                role: ApiRole::Admin,
            }]
        );
        let text = format!(
            "{}\n[[api_users]]\nname = \"alice\"\ntoken = \"alice-token\"\nrole = \"agent\"\n\
             extension = \"1001\"\n[limits]\nexempt_sources = [\"10.0.0.0/8\"]\n",
            GOOD.replace(
                "required = false",
                "required = false\nalgorithms = [\"MD5\"]"
            )
        );
        let c = Config::from_toml(&text).unwrap();
        let s = c.settings();
        assert_eq!(s.algorithms, [DigestAlgorithm::Md5]);
        assert_eq!(s.api_users[1].role, ApiRole::Agent("1001".into()));
        assert_eq!(s.exempt_sources, [IpNet::parse("10.0.0.0/8").unwrap()]);
        // Only deserialized, not validated: nothing parsed.
        let raw: Config = toml::from_str(GOOD).unwrap();
        assert_eq!(raw.settings(), &Settings::default());
    }

    #[test]
    fn shipped_config_is_valid() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
        Config::from_toml(&text).unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml(&GOOD.replace("domain =", "domian =")).unwrap_err();
        assert!(e.to_string().contains("domian"), "{e}");
    }

    #[test]
    fn each_error_names_its_key() {
        let cases = [
            (
                GOOD.replace("udp:127.0.0.1:5060", "sctp:127.0.0.1:5060"),
                "sip.listen[0]",
            ),
            (GOOD.replace("[::1]:5060", "::1:5060"), "sip.listen[1]"),
            (
                GOOD.replace("\"8001\"\nname", "\"8000\"\nname"),
                "queues[1].number",
            ),
            (
                GOOD.replace("number = \"8001\"", "number = \"80x\""),
                "queues[1].number",
            ),
            (
                GOOD.replace(
                    "queues = [\"8000\", \"8001\"]",
                    "queues = [\"8000\", \"9\"]",
                ),
                "agents[0].queues[1]",
            ),
            (
                GOOD.replace("[auth]", "[codes]\nready = \"*3\"\n[auth]"),
                "codes.ready",
            ),
            (
                GOOD.replace("[auth]", "[storage]\ngroup_commit_ms = 101\n[auth]"),
                "storage.group_commit_ms",
            ),
            (
                GOOD.replace("[auth]", "[codes]\nlogin = \"*36\"\n[auth]"),
                "codes.login",
            ),
            (
                GOOD.replace("[auth]", "[codes]\ntoggle_ready = \"*3\"\n[auth]"),
                "codes.toggle_ready",
            ),
            (
                GOOD.replace("[auth]", "[codes]\ntoggle_login = \"*389\"\n[auth]"),
                "codes.login",
            ),
            (
                GOOD.replace("[auth]", "[feature_keys]\ndnd_reason = \"NAP\"\n[auth]"),
                "feature_keys.dnd_reason",
            ),
            (GOOD.replace("code = 1", "code = 10000"), "reasons[0].code"),
            (
                GOOD.replace("role = \"admin\"", "role = \"root\""),
                "api_users[0].role",
            ),
            (
                GOOD.replace("domain = \"pbx.example.com\"", "domain = \"\""),
                "sip.domain",
            ),
        ];
        for (text, key) in cases {
            let k = keys(&text);
            assert!(k.iter().any(|x| x == key), "expected {key} in {k:?}");
        }
    }

    #[test]
    fn duplicate_extension_and_missing_password() {
        let text = format!("{GOOD}\n[[agents]]\nextension = \"1001\"\nname = \"Bob\"\n")
            .replace("required = false", "required = true");
        let k = keys(&text);
        assert!(k.contains(&"agents[1].extension".to_string()), "{k:?}");
        assert!(k.contains(&"agents[1].password".to_string()), "{k:?}");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = GOOD
            .replace("number = \"8001\"", "number = \"\"")
            .replace("name = \"BREAK\"", "name = \"break\"");
        assert!(keys(&text).len() >= 2);
    }

    #[test]
    fn dnd_reason_names_a_configured_reason() {
        let with = GOOD.replace("[auth]", "[feature_keys]\ndnd_reason = \"BREAK\"\n[auth]");
        assert!(keys(&with).is_empty(), "{:?}", keys(&with));
        let c = Config::from_toml(&with).unwrap();
        assert_eq!(c.feature_keys.dnd_reason.as_deref(), Some("BREAK"));
        assert_eq!(c.codes.toggle_login, "*45");
        assert_eq!(
            c.subscribe.max_per_agent, 48,
            "40 BLF keys + feature keys fit"
        );
    }

    #[test]
    fn subscribe_bounds_are_checked() {
        let with = |t: &str| keys(&format!("{GOOD}\n[subscribe]\n{t}\n"));
        assert!(with("min_expires = 30\nmax_expires = 600\ndefault_expires = 300").is_empty());
        assert_eq!(with("min_expires = 0"), ["subscribe.min_expires"]);
        assert_eq!(
            with("min_expires = 600\nmax_expires = 300\ndefault_expires = 300"),
            ["subscribe.max_expires", "subscribe.default_expires"]
        );
        assert_eq!(
            with("default_expires = 7200"),
            ["subscribe.default_expires"]
        );
        assert_eq!(with("max_expires = 100000"), ["subscribe.max_expires"]);
        assert_eq!(
            with("max_subscriptions = 0"),
            ["subscribe.max_subscriptions"]
        );
        assert_eq!(with("max_per_agent = 0"), ["subscribe.max_per_agent"]);
    }
}

#[cfg(test)]
mod limits_tests {
    use super::*;

    fn keys(limits: &str) -> Vec<String> {
        let text = format!("[auth]\nrequired = false\n[limits]\n{limits}\n");
        match Config::from_toml(&text) {
            Ok(_) => vec![],
            Err(ConfigErrors(v)) => v.into_iter().map(|e| e.key).collect(),
        }
    }

    #[test]
    fn limit_defaults_and_errors_name_their_keys() {
        let d = LimitsConfig::default();
        assert_eq!((d.requests_per_sec, d.request_burst), (500, 1000));
        assert_eq!(d.tcp_connections_per_ip, 2048);
        assert!(d.exempt_loopback);
        assert_eq!((d.max_transactions, d.max_dialogs), (500_000, 200_000));
        assert!(keys("exempt_sources = [\"10.0.0.0/8\", \"::1\"]").is_empty());
        for key in [
            "requests_per_sec",
            "request_burst",
            "tcp_connections_per_ip",
            "max_transactions",
            "max_dialogs",
        ] {
            assert_eq!(keys(&format!("{key} = 0")), [format!("limits.{key}")]);
        }
        assert_eq!(
            keys("exempt_sources = [\"10.0.0.1\", \"10.0.0.0/40\", \"pbx\"]"),
            ["limits.exempt_sources[1]", "limits.exempt_sources[2]"]
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let text = "[auth]\nrequired = false\n[[trusted_proxies]]\naddress = \"127.0.0.2\"\n\
                    [[trusted_proxies]]\naddress = \"10.0.0.0/8\"\n";
        let c = Config::from_toml(text).unwrap();
        assert_eq!(
            c.settings().trusted_proxies,
            [
                IpNet::parse("127.0.0.2").unwrap(),
                IpNet::parse("10.0.0.0/8").unwrap()
            ]
        );
        let bad = "[auth]\nrequired = false\n[[trusted_proxies]]\naddress = \"kamailio\"\n";
        let Err(ConfigErrors(e)) = Config::from_toml(bad) else {
            panic!("a host name was accepted")
        };
        assert_eq!(e[0].key, "trusted_proxies[0].address");
    }
}
