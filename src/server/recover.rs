//! Start-up state: the engine rebuilt from the store's snapshot and journal
//! and reconciled with the configuration (SPEC §7), and the configuration
//! turned into what the engine and the UAS take (model, secrets, codes).

use tracing::info;

use super::ServerError;
use crate::config::Config;
use crate::engine::{AgentDef, Engine, Model, QueueDef, QueueId, ReasonDef};
use crate::sip::auth::Secret;
use crate::sip::star_code::Codes;
use crate::store::Store;

/// Opens the store and rebuilds the engine from its snapshot and journal
/// (SPEC §7), reconciling with the configuration: state of agents, queues or
/// memberships no longer configured is dropped with a log line; new
/// memberships start LOGGED_OUT. A fresh snapshot then starts the journal over.
///
/// The agents move from `config` to the engine (`config.agents` is left
/// empty): the configuration's copy is dropped before the engine is built,
/// so that with 100,000 agents the start-up peak holds two copies of them,
/// not three, and the engine reuses the memory the parse left.
pub(super) fn recover(config: &mut Config) -> Result<(Engine, Store), ServerError> {
    let (store, recovered) = Store::open_with(
        &config.storage.dir,
        config.storage.sync,
        config.storage.backend,
    )?;
    // Without fdatasync (benchmarks) there is nothing to group.
    if config.storage.sync {
        store.set_group_commit(std::time::Duration::from_millis(
            config.storage.group_commit_ms.into(),
        ));
    }
    let mut engine = engine(config);
    let dir = config.storage.dir.display().to_string();
    let corrupt = |offset: u64, what: String| crate::store::StoreError::Corrupt {
        path: config.storage.dir.clone(),
        offset,
        what,
    };
    let mut restored = 0usize;
    let mut apply = |changes: Vec<crate::engine::Change>, engine: &mut Engine| {
        for c in changes {
            match engine.restore(c) {
                Ok(()) => restored += 1,
                Err(skip) => info!(reason = %skip, "stored state dropped"),
            }
        }
    };
    let fresh = recovered.snapshot.is_none() && recovered.records.is_empty();
    if let Some(snap) = recovered.snapshot {
        let changes = crate::engine::record::decode(&snap)
            .map_err(|e| corrupt(0, format!("snapshot does not decode: {e}")))?;
        apply(changes, &mut engine);
    }
    let journaled = recovered.records.len();
    for (i, rec) in recovered.records.into_iter().enumerate() {
        let changes = crate::engine::record::decode(&rec)
            .map_err(|e| corrupt(i as u64, format!("journal record {i} does not decode: {e}")))?;
        apply(changes, &mut engine);
    }
    info!(%dir, records = journaled, restored, "state recovered");
    let _ = engine.take_changes();
    if fresh {
        // Nothing stored: the state is the configuration's (everyone logged
        // out), which an empty journal already says; a snapshot of a million
        // logged-out agents would only slow the first start.
        return Ok((engine, store));
    }
    // Start the journal over from a snapshot of what was recovered.
    let (tx, rx) = std::sync::mpsc::channel();
    let snap =
        crate::engine::record::encode(&engine.export()).map_err(|e| corrupt(0, e.to_string()))?;
    store.checkpoint(
        snap,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv().unwrap_or(Err(crate::store::StoreError::Closed))?;
    Ok((engine, store))
}

/// The engine's model from the configuration.
pub fn model(cfg: &Config) -> Model {
    let (queues, reasons) = queues_and_reasons(cfg);
    let ids = QueueIds::of(&queues);
    Model {
        agents: cfg
            .agents
            .iter()
            .map(|a| ids.agent(a.extension.as_str(), a.name.clone(), &a.queues))
            .collect(),
        queues,
        reasons,
    }
}

/// The engine of the configuration, taking its agents (`config.agents` is
/// left empty): each agent's configuration becomes its engine entry and is
/// dropped in one pass, while its memory is still in the cache (a model
/// of every agent built first, then the engine from it, walked a million
/// agents three times).
pub(super) fn engine(config: &mut Config) -> Engine {
    let (queues, reasons) = queues_and_reasons(config);
    let ids = QueueIds::of(&queues);
    let agents = std::mem::take(&mut config.agents);
    let defs = agents
        .into_iter()
        .map(|a| ids.agent(a.extension.as_str(), a.name, &a.queues));
    Engine::build(queues, reasons, defs)
}

/// The configured queues and not-ready reasons.
fn queues_and_reasons(cfg: &Config) -> (Vec<QueueDef>, Vec<ReasonDef>) {
    let queues = cfg
        .queues
        .iter()
        .map(|q| QueueDef {
            number: q.number.as_str().into(),
            name: q.name.clone(),
            auto_ready: q.auto_ready,
            wrap_up_secs: q.wrap_up_secs,
            not_ready_after_other_call: q.not_ready_after_other_call,
        })
        .collect();
    let reasons = cfg
        .reasons
        .iter()
        .map(|r| ReasonDef {
            code: r.code,
            name: r.name.as_str().into(),
        })
        .collect();
    (queues, reasons)
}

/// The configured queues' ids by number: every membership shares its
/// queue's id (a million agents' memberships are then no million
/// allocations).
struct QueueIds(ahash::AHashMap<String, QueueId>);

impl QueueIds {
    fn of(queues: &[QueueDef]) -> Self {
        Self(
            queues
                .iter()
                .map(|q| (q.number.to_string(), q.number.clone()))
                .collect(),
        )
    }

    /// An agent's definition.
    fn agent(&self, extension: &str, name: String, queues: &[String]) -> AgentDef {
        AgentDef {
            extension: extension.into(),
            name,
            queues: queues
                .iter()
                .map(|q| {
                    self.0
                        .get(q.as_str())
                        .map_or_else(|| q.as_str().into(), Clone::clone)
                })
                .collect(),
        }
    }
}

/// Each agent's password or HA1, by extension.
pub(super) fn agent_secrets(cfg: &Config) -> ahash::AHashMap<String, Secret> {
    cfg.agents
        .iter()
        .filter_map(|a| {
            let secret = match (&a.password, &a.ha1, &a.ha1_sha256) {
                (Some(p), _, _) => Secret::Password(p.clone()),
                (_, Some(h), _) => Secret::Ha1Md5(h.to_ascii_lowercase()),
                (_, _, Some(h)) => Secret::Ha1Sha256(h.to_ascii_lowercase()),
                _ => return None,
            };
            Some((a.extension.clone(), secret))
        })
        .collect()
}

/// The star codes from the configuration.
pub fn codes(cfg: &Config) -> Codes {
    Codes {
        ready: cfg.codes.ready.clone(),
        not_ready: cfg.codes.not_ready.clone(),
        login: cfg.codes.login.clone(),
        logout: cfg.codes.logout.clone(),
    }
}
