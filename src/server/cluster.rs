//! The shell of a node on a shared PostgreSQL store (`storage.backend =
//! "postgres"`, see [`crate::store::postgres`]): the UAS's engine is a
//! replica, the database the truth.
//!
//! A change: the UAS applies it to the replica and hands out its record
//! (the changes and their events); [`Cluster::append`] sends it to the
//! committer with the base it was made on: the agent's version the
//! replica reflects (`known`), or the write of ours still in flight that
//! it follows. The database refuses it if the agent moved meanwhile
//! (another node changed it): the UAS undoes it and answers 500, and the
//! agent is read afresh ([`Storage::on_event`], `Fresh`); until then its
//! changes are refused here, since its undo may have restored records an
//! other node's change had replaced. Other nodes' changes (`Remote`)
//! replace the replica's records and their events are published like ours.

use ahash::{AHashMap, AHashSet};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{recover::engine, ServerError, ShellUas};
use crate::config::{Config, DbUrl};
use crate::engine::{AgentState, Change, Engine};
use crate::store::postgres::{self, Failure, Pg, PgAppend, PgEvent};
use crate::store::{Store, StoreError, StoreStats};
use crate::uas::{change_agent, Now, SharedRecord};

/// Where a node's changes go.
pub(super) enum Storage {
    /// The embedded journal (or redb): this node alone.
    Local(Store),
    /// PostgreSQL, shared with other nodes.
    Pg(Box<Cluster>),
}

impl Storage {
    /// The counters, shared (for `GET /metrics`).
    pub(super) fn shared_stats(&self) -> std::sync::Arc<StoreStats> {
        match self {
            Self::Local(s) => s.shared_stats(),
            Self::Pg(c) => c.pg.shared_stats(),
        }
    }

    /// True on a store shared by several nodes.
    pub(super) fn is_shared(&self) -> bool {
        matches!(self, Self::Pg(_))
    }

    /// The next event of the database tasks (never, on a local store).
    pub(super) async fn next_event(&mut self) -> Option<PgEvent> {
        match self {
            Self::Local(_) => std::future::pending().await,
            Self::Pg(c) => c.events.recv().await,
        }
    }

    /// Another queued event of the database tasks, if any.
    pub(super) fn try_event(&mut self) -> Option<PgEvent> {
        match self {
            Self::Local(_) => None,
            Self::Pg(c) => c.events.try_recv().ok(),
        }
    }

    /// Stops the store once what is queued is written.
    pub(super) async fn close(self) {
        match self {
            Self::Local(s) => {
                let _ = tokio::task::spawn_blocking(move || s.close()).await;
            }
            Self::Pg(c) => c.pg.close().await,
        }
    }
}

/// A node's view of the shared store (module docs).
pub(super) struct Cluster {
    pg: Pg,
    events: mpsc::UnboundedReceiver<PgEvent>,
    /// The version of each agent the replica reflects.
    known: AHashMap<String, i64>,
    /// Each agent's last write of ours still in flight.
    last: AHashMap<String, u64>,
    /// The agents of each write in flight.
    tickets: AHashMap<u64, Vec<String>>,
    /// Agents read afresh after a failed write; their changes wait.
    resyncing: AHashSet<String>,
}

/// Opens the database (migrating it), reads every agent into a new engine
/// and starts the database tasks.
pub(super) async fn recover(config: &mut Config) -> Result<(Engine, Storage), ServerError> {
    let Some(DbUrl(url)) = config.storage.url.clone() else {
        return Err(StoreError::Database("storage.url is required".into()).into());
    };
    let agents: Vec<&str> = config.agents.iter().map(|a| a.extension.as_str()).collect();
    let loaded = postgres::open(&url, &agents).await?;
    let mut engine = engine(config);
    let mut restored = 0usize;
    for (agent, text) in &loaded.records {
        match serde_json::from_str::<Change>(text) {
            Ok(c) => match engine.restore(c) {
                Ok(()) => restored += 1,
                Err(skip) => info!(reason = %skip, "stored state dropped"),
            },
            Err(e) => warn!(%agent, error = %e, "postgres: a record does not decode; skipped"),
        }
    }
    let _ = engine.take_changes();
    info!(
        url = %crate::config::redact_password(&url),
        restored,
        last_change = loaded.last_seq,
        "state read from postgres"
    );
    let (tx, events) = mpsc::unbounded_channel();
    let pg = Pg::start(&url, loaded.last_seq, tx)?;
    let cluster = Cluster {
        pg,
        events,
        known: loaded.versions.into_iter().collect(),
        last: AHashMap::new(),
        tickets: AHashMap::new(),
        resyncing: AHashSet::new(),
    };
    Ok((engine, Storage::Pg(Box::new(cluster))))
}

#[derive(serde::Serialize)]
struct Cond<'a> {
    agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    v: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    w: Option<String>,
}

#[derive(serde::Serialize)]
struct Row<'a> {
    agent: &'a str,
    key: String,
    rec: &'a Change,
}

#[derive(serde::Serialize)]
struct WrapUpRow<'a> {
    agent: &'a str,
    queue: &'a str,
    due: Option<u64>,
}

impl Cluster {
    /// Sends the UAS's write `ticket` to the committer, with its base; an
    /// error (the write is refused at once) if it cannot go.
    pub(super) fn append(&mut self, ticket: u64, record: &[u8]) -> Result<(), Failure> {
        let rec: SharedRecord = serde_json::from_slice(record)
            .map_err(|e| Failure::Database(format!("record does not decode: {e}")))?;
        let mut agents: Vec<String> = Vec::new();
        for c in &rec.changes {
            let a = change_agent(c).as_str();
            if !agents.iter().any(|x| x == a) {
                agents.push(a.to_string());
            }
        }
        if agents.iter().any(|a| self.resyncing.contains(a)) {
            return Err(Failure::Conflict);
        }
        let mut conds = Vec::with_capacity(agents.len());
        let mut after = Vec::new();
        for a in &agents {
            match self.last.get(a) {
                Some(&t) => {
                    after.push(t);
                    conds.push(Cond {
                        agent: a,
                        v: None,
                        w: Some(format!("{}:{t}", self.pg.node)),
                    });
                }
                None => conds.push(Cond {
                    agent: a,
                    v: Some(self.known.get(a).copied().unwrap_or(0)),
                    w: None,
                }),
            }
        }
        let rows: Vec<Row<'_>> = rec
            .changes
            .iter()
            .map(|c| Row {
                agent: change_agent(c).as_str(),
                key: match c {
                    Change::Cell { queue, .. } => format!("cell:{queue}"),
                    Change::Calls { .. } => "calls".into(),
                    Change::Membership { .. } => "membership".into(),
                },
                rec: c,
            })
            .collect();
        let wrapups: Vec<WrapUpRow<'_>> = rec
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Cell { agent, queue, cell } => Some(WrapUpRow {
                    agent: agent.as_str(),
                    queue: queue.as_str(),
                    due: (cell.state == AgentState::WrapUp)
                        .then_some(cell.wrap_up_until)
                        .flatten(),
                }),
                _ => None,
            })
            .collect();
        let item = format!(
            r#"{{"t":{ticket},"a":{},"r":{},"u":{},"p":{}}}"#,
            json(&conds),
            json(&rows),
            json(&wrapups),
            String::from_utf8_lossy(record)
        );
        for a in &agents {
            self.last.insert(a.clone(), ticket);
        }
        self.tickets.insert(ticket, agents);
        self.pg.append(PgAppend {
            ticket,
            after,
            item,
        });
        Ok(())
    }

    /// One event of the database tasks.
    fn on_event(&mut self, uas: &mut ShellUas, now: Now, ev: PgEvent) {
        match ev {
            PgEvent::Done { ticket, result } => {
                let agents = self.tickets.remove(&ticket).unwrap_or_default();
                match result {
                    Ok(versions) => {
                        for a in &agents {
                            if self.last.get(a) == Some(&ticket) {
                                self.last.remove(a);
                            }
                        }
                        for (a, v) in versions {
                            let k = self.known.entry(a).or_insert(0);
                            *k = (*k).max(v);
                        }
                        uas.on_durable(now, ticket, Ok::<(), Failure>(()));
                    }
                    Err(e) => {
                        uas.on_durable(now, ticket, Err(e));
                        for a in agents {
                            self.last.remove(&a);
                            self.resync(a);
                        }
                    }
                }
            }
            PgEvent::Remote {
                seq,
                versions,
                payload,
            } => {
                // Records older than what the replica reflects (read afresh
                // meanwhile) are not restored; their events still go out.
                let newer = versions
                    .iter()
                    .any(|(a, v)| *v > self.known.get(a).copied().unwrap_or(0));
                for (a, v) in &versions {
                    let k = self.known.entry(a.clone()).or_insert(0);
                    *k = (*k).max(*v);
                }
                match serde_json::from_str::<SharedRecord>(&payload) {
                    Ok(rec) if newer => uas.apply_remote(now, rec.changes, rec.events),
                    Ok(rec) => uas.apply_remote(now, Vec::new(), rec.events),
                    Err(e) => {
                        warn!(seq, error = %e, "postgres: a change does not decode; re-reading its agents");
                        for (a, _) in versions {
                            self.resync(a);
                        }
                    }
                }
            }
            PgEvent::Fresh {
                agent,
                version,
                records,
            } => {
                self.resyncing.remove(&agent);
                self.known.insert(agent.clone(), version);
                let changes = records
                    .iter()
                    .filter_map(|r| serde_json::from_str::<Change>(r).ok())
                    .collect();
                uas.apply_remote(now, changes, Vec::new());
            }
            PgEvent::WrapUpDue { agent } => {
                if !self.resyncing.contains(&agent) {
                    uas.expire_wrapup(now, &agent);
                }
            }
        }
    }

    /// Reads `agent` afresh; its changes are refused until then.
    fn resync(&mut self, agent: String) {
        if self.resyncing.insert(agent.clone()) {
            self.pg.resync(agent);
        }
    }
}

impl Storage {
    /// One event of the database tasks (nothing on a local store).
    pub(super) fn on_event(&mut self, uas: &mut ShellUas, now: Now, ev: PgEvent) {
        if let Self::Pg(c) = self {
            c.on_event(uas, now, ev);
        }
    }
}

/// One list of a write, as JSON.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}
