//! PostgreSQL as the store of several facd nodes (`storage.backend =
//! "postgres"`): the database is the truth, each node's engine a replica.
//!
//! Tables (created and migrated by [`open`], versions in `facd_schema`,
//! under an advisory lock so that nodes starting together do not race):
//! - `facd_agents(agent, version, writer)`: one row per agent; `version`
//!   counts its changes, `writer` names the last one (`node:ticket`).
//! - `facd_records(agent, key, record)`: the agent's engine records
//!   (`cell:<queue>`, `calls`, `membership`), each the engine's `Change`.
//! - `facd_changes(seq, node, ticket, versions, payload)`: every change in
//!   commit order (the record and its events), read by the other nodes.
//! - `facd_wrapups(agent, queue, due, claimed_until)`: wrap-up deadlines.
//!
//! Three tasks per node, each on its own connection, each reconnecting by
//! itself with a pause:
//! - the committer takes every write queued while the last one ran and
//!   commits them with one call of `facd_commit` (one round trip, one
//!   transaction: group commit). Each write names the agent versions it
//!   was made on (`{"v": n}`), or the write of ours it follows
//!   (`{"w": "node:ticket"}`); one whose base moved is refused
//!   ([`Failure::Conflict`]) without failing the others. Rows of a batch are
//!   locked in agent order, so batches of two nodes cannot deadlock.
//!   `facd_changes` rows are inserted under one advisory lock held until
//!   commit, so their `seq` order is their commit order and a reader that
//!   has seen `seq` n has seen every change before it.
//! - the listener `LISTEN`s on `facd_changes` and, on each notification,
//!   on reconnecting and every second, reads the changes after the last
//!   one it saw ([`PgEvent::Remote`]); it also reads an agent's rows afresh
//!   when the shell asks ([`PgEvent::Fresh`]), in order with the changes.
//! - the wrap-up poller claims due deadlines with `FOR UPDATE SKIP LOCKED`
//!   and a lease ([`WRAPUP_LEASE_MS`]): exactly one live node fires each;
//!   the deadline of a node that died is claimed again when its lease ends.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{StoreError, StoreStats};

/// Writes committed in one transaction at most.
const MAX_BATCH: usize = 1024;
/// A commit that takes longer is given up (and answered 500).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Between two attempts to reach the database.
const RETRY: Duration = Duration::from_millis(500);
/// How often due wrap-ups are looked for.
const WRAPUP_POLL: Duration = Duration::from_millis(250);
/// A node that claimed a due wrap-up has this long to fire it before
/// another node may.
pub const WRAPUP_LEASE_MS: i64 = 3000;
/// Changes read per query when catching up.
const CATCH_UP_ROWS: i64 = 2000;

/// The migrations, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[(1, SCHEMA_V1)];

/// Advisory lock key held while migrating ("facd" and 1).
const MIGRATE_LOCK: i64 = 0x6661_6364_0001;

const SCHEMA_V1: &str = r#"
CREATE TABLE facd_agents (
    agent text PRIMARY KEY,
    version bigint NOT NULL DEFAULT 0,
    writer text NOT NULL DEFAULT ''
);
CREATE TABLE facd_records (
    agent text NOT NULL,
    key text NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (agent, key)
);
CREATE TABLE facd_changes (
    seq bigserial PRIMARY KEY,
    node text NOT NULL,
    ticket bigint NOT NULL,
    versions jsonb NOT NULL,
    payload jsonb NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE facd_wrapups (
    agent text NOT NULL,
    queue text NOT NULL,
    due bigint NOT NULL,
    claimed_until bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (agent, queue)
);
CREATE INDEX facd_wrapups_due ON facd_wrapups (due);

-- One batch of writes of one node: p_batch is
-- [{"t": ticket, "a": [{"agent": …, "v": version} | {"agent": …, "w": "node:ticket"}],
--   "r": [{"agent": …, "key": …, "rec": change}], "u": [{"agent": …, "queue": …, "due": ms|null}],
--   "p": payload}, …]
-- Returns [{"t": ticket, "ok": true, "v": {agent: version}} | {"t": ticket, "ok": false}, …].
CREATE FUNCTION facd_commit(p_node text, p_batch jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $fn$
DECLARE
    t jsonb;
    a jsonb;
    ok boolean;
    cur_version bigint;
    cur_writer text;
    new_version bigint;
    vers jsonb;
    -- Arrays, appended in place (a jsonb || would copy the whole batch at
    -- every write: quadratic in the batch, and batches grow under load).
    outcome jsonb[] := '{}';
    done jsonb[] := '{}';
    agents text[];
BEGIN
    -- An array, not a subquery: the rows are then found by the index
    -- (a join with the JSON would scan every agent).
    agents := ARRAY(SELECT DISTINCT x->>'agent' FROM jsonb_array_elements(p_batch) b,
        jsonb_array_elements(b->'a') x ORDER BY 1);
    INSERT INTO facd_agents (agent) SELECT unnest(agents) ORDER BY 1
        ON CONFLICT (agent) DO NOTHING;
    PERFORM 1 FROM facd_agents WHERE agent = ANY (agents) ORDER BY agent FOR UPDATE;
    FOR t IN SELECT value FROM jsonb_array_elements(p_batch) LOOP
        ok := true;
        FOR a IN SELECT value FROM jsonb_array_elements(t->'a') LOOP
            SELECT version, writer INTO cur_version, cur_writer
                FROM facd_agents WHERE agent = a->>'agent';
            IF a ? 'w' THEN
                ok := ok AND cur_writer = a->>'w';
            ELSE
                ok := ok AND cur_version = (a->>'v')::bigint;
            END IF;
        END LOOP;
        IF NOT ok THEN
            outcome := array_append(outcome, jsonb_build_object('t', t->'t', 'ok', false));
            CONTINUE;
        END IF;
        vers := '{}'::jsonb;
        FOR a IN SELECT value FROM jsonb_array_elements(t->'a') LOOP
            UPDATE facd_agents SET version = version + 1, writer = p_node || ':' || (t->>'t')
                WHERE agent = a->>'agent' RETURNING version INTO new_version;
            vers := vers || jsonb_build_object(a->>'agent', new_version);
        END LOOP;
        INSERT INTO facd_records (agent, key, record)
            SELECT r->>'agent', r->>'key', r->'rec' FROM jsonb_array_elements(t->'r') r
            ON CONFLICT (agent, key) DO UPDATE SET record = EXCLUDED.record;
        DELETE FROM facd_wrapups w USING jsonb_array_elements(t->'u') x
            WHERE w.agent = x->>'agent' AND w.queue = x->>'queue'
              AND jsonb_typeof(x->'due') <> 'number';
        INSERT INTO facd_wrapups (agent, queue, due, claimed_until)
            SELECT x->>'agent', x->>'queue', (x->>'due')::bigint, 0
                FROM jsonb_array_elements(t->'u') x WHERE jsonb_typeof(x->'due') = 'number'
            ON CONFLICT (agent, queue) DO UPDATE SET due = EXCLUDED.due, claimed_until = 0;
        done := array_append(done, jsonb_build_object('t', t->'t', 'v', vers, 'p', t->'p'));
        outcome := array_append(outcome, jsonb_build_object('t', t->'t', 'ok', true, 'v', vers));
    END LOOP;
    IF cardinality(done) > 0 THEN
        -- seq order is commit order: held until this transaction ends.
        PERFORM pg_advisory_xact_lock(7370626272);
        INSERT INTO facd_changes (node, ticket, versions, payload)
            SELECT p_node, (d->>'t')::bigint, d->'v', d->'p'
                FROM unnest(done) WITH ORDINALITY AS u(d, n) ORDER BY n;
        PERFORM pg_notify('facd_changes', p_node);
    END IF;
    RETURN to_jsonb(outcome);
END
$fn$;
"#;

/// One write for the committer.
#[derive(Debug)]
pub struct PgAppend {
    /// The UAS's ticket.
    pub ticket: u64,
    /// Our earlier tickets this write follows: if one of them failed, so
    /// does this one, without asking the database.
    pub after: Vec<u64>,
    /// The write as one element of `facd_commit`'s batch (JSON, see the SQL).
    pub item: String,
}

/// Why a write was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The agent changed on another node since this node's replica saw it.
    #[error("the agent changed on another node meanwhile (conflict)")]
    Conflict,
    /// The database could not be reached or refused the transaction.
    #[error("PostgreSQL: {0}")]
    Database(String),
}

/// What the database tasks tell the core.
#[derive(Debug)]
pub enum PgEvent {
    /// A write finished: the new version of each of its agents, or why not.
    Done {
        /// The UAS's ticket.
        ticket: u64,
        /// Committed (agent, version) pairs, or the failure.
        result: Result<Vec<(String, i64)>, Failure>,
    },
    /// A change another node committed.
    Remote {
        /// Its position in `facd_changes`.
        seq: i64,
        /// The versions it gave its agents.
        versions: Vec<(String, i64)>,
        /// The record and its events (JSON).
        payload: String,
    },
    /// An agent's rows as they are now (asked for with [`Pg::resync`]).
    Fresh {
        /// Extension.
        agent: String,
        /// Its version.
        version: i64,
        /// Its records (JSON `Change`s), the membership first.
        records: Vec<String>,
    },
    /// A wrap-up deadline of `agent` is due and this node claimed it.
    WrapUpDue {
        /// Extension.
        agent: String,
    },
}

/// What [`open`] read: every agent's version and records, and the last
/// change they reflect.
#[derive(Debug, Default)]
pub struct Loaded {
    /// (agent, version).
    pub versions: Vec<(String, i64)>,
    /// (agent, record as JSON), each agent's membership first.
    pub records: Vec<(String, String)>,
    /// The last `facd_changes.seq` the rows reflect.
    pub last_seq: i64,
}

/// A node's handle on the database tasks.
pub struct Pg {
    appends: Option<mpsc::UnboundedSender<PgAppend>>,
    resync: mpsc::UnboundedSender<String>,
    stop: CancellationToken,
    committer: Option<tokio::task::JoinHandle<()>>,
    stats: Arc<StoreStats>,
    /// This node's name in `facd_changes.node` and `facd_agents.writer`.
    pub node: String,
}

fn db_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("{what}: {e}"))
}

fn pg_config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| db_err("storage.url is not a PostgreSQL connection string", e))?;
    cfg.connect_timeout(Duration::from_secs(3));
    cfg.application_name("facd");
    Ok(cfg)
}

/// Connects; notifications (their payload: the node that committed) go to
/// `notes`, which is dropped when the connection ends.
async fn connect(
    cfg: &tokio_postgres::Config,
    notes: Option<mpsc::UnboundedSender<String>>,
) -> Result<Client, tokio_postgres::Error> {
    let (client, mut conn) = cfg.connect(NoTls).await?;
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        use futures_util::StreamExt;
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if let Some(notes) = &notes {
                        let _ = notes.send(n.payload().to_string());
                    }
                }
                Ok(AsyncMessage::Notice(n)) => debug!(notice = %n.message(), "postgres notice"),
                Ok(_) => {}
                Err(e) => {
                    debug!(error = %e, "postgres connection ended");
                    break;
                }
            }
        }
        // Dropping `notes` tells the listener the connection is gone.
    });
    Ok(client)
}

/// Connects to `url`, creates or migrates the schema, adds a row for each
/// of `agents` that has none, and reads every agent's state.
pub async fn open(url: &str, agents: &[&str]) -> Result<Loaded, StoreError> {
    let cfg = pg_config(url)?;
    let mut client = connect(&cfg, None)
        .await
        .map_err(|e| db_err("cannot connect", e))?;
    migrate(&mut client).await?;
    let mut sorted: Vec<&str> = agents.to_vec();
    sorted.sort_unstable();
    client
        .execute(
            "INSERT INTO facd_agents (agent) SELECT unnest($1::text[]) ORDER BY 1 \
             ON CONFLICT (agent) DO NOTHING",
            &[&sorted],
        )
        .await
        .map_err(|e| db_err("cannot add the configured agents", e))?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| db_err("cannot read the state", e))?;
    let read = |e| db_err("cannot read the state", e);
    let last_seq: i64 = tx
        .query_one("SELECT coalesce(max(seq), 0) FROM facd_changes", &[])
        .await
        .map_err(read)?
        .get(0);
    let versions = tx
        .query("SELECT agent, version FROM facd_agents", &[])
        .await
        .map_err(read)?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let records = tx
        .query(
            "SELECT agent, record::text FROM facd_records \
             ORDER BY agent, key <> 'membership', key",
            &[],
        )
        .await
        .map_err(read)?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    tx.commit().await.map_err(read)?;
    Ok(Loaded {
        versions,
        records,
        last_seq,
    })
}

/// Runs the migrations this database has not had, in one transaction under
/// an advisory lock.
async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let fail = |e| db_err("cannot migrate the schema", e);
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(fail)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS facd_schema (\
         version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(fail)?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM facd_schema", &[])
        .await
        .map_err(fail)?
        .get(0);
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > newest {
        return Err(StoreError::Database(format!(
            "the database's schema is version {current}, newer than this facd knows ({newest}); upgrade facd"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await.map_err(fail)?;
        tx.execute("INSERT INTO facd_schema (version) VALUES ($1)", &[version])
            .await
            .map_err(fail)?;
        info!(version, "postgres: schema migrated");
    }
    tx.commit().await.map_err(fail)?;
    Ok(())
}

impl Pg {
    /// Starts the committer, the listener (from `last_seq`) and the wrap-up
    /// poller; what they find goes to `events`.
    pub fn start(
        url: &str,
        last_seq: i64,
        events: mpsc::UnboundedSender<PgEvent>,
    ) -> Result<Self, StoreError> {
        let cfg = pg_config(url)?;
        let node = format!(
            "{}-{}-{:08x}",
            hostname(),
            std::process::id(),
            rand::random::<u32>()
        );
        let stats = Arc::new(StoreStats::default());
        let stop = CancellationToken::new();
        let (appends, appends_rx) = mpsc::unbounded_channel();
        let (resync, resync_rx) = mpsc::unbounded_channel();
        let committer = tokio::spawn(committer(
            cfg.clone(),
            node.clone(),
            appends_rx,
            events.clone(),
            stats.clone(),
        ));
        tokio::spawn(listener(
            cfg.clone(),
            node.clone(),
            last_seq,
            resync_rx,
            events.clone(),
            stop.clone(),
        ));
        tokio::spawn(wrapup_poller(cfg, events, stop.clone()));
        info!(%node, "postgres: node started");
        Ok(Self {
            appends: Some(appends),
            resync,
            stop,
            committer: Some(committer),
            stats,
            node,
        })
    }

    /// Queues a write; its outcome comes back as [`PgEvent::Done`].
    pub fn append(&self, append: PgAppend) {
        if let Some(tx) = &self.appends {
            let _ = tx.send(append);
        }
    }

    /// Asks for `agent`'s rows afresh ([`PgEvent::Fresh`], after every
    /// change already read).
    pub fn resync(&self, agent: String) {
        let _ = self.resync.send(agent);
    }

    /// The counters, shared (for `GET /metrics`).
    pub fn shared_stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
    }

    /// Lets the queued writes finish, then stops every task.
    pub async fn close(mut self) {
        self.appends = None;
        if let Some(c) = self.committer.take() {
            let _ = c.await;
        }
        self.stop.cancel();
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "facd".into())
}

/// The committer task: group commit of every queued write (module docs).
async fn committer(
    cfg: tokio_postgres::Config,
    node: String,
    mut rx: mpsc::UnboundedReceiver<PgAppend>,
    out: mpsc::UnboundedSender<PgEvent>,
    stats: Arc<StoreStats>,
) {
    let mut conn: Option<(Client, Statement)> = None;
    let mut next_try = Instant::now();
    // Our tickets that failed: a write that follows one fails too.
    let mut failed: HashSet<u64> = HashSet::new();
    let mut down_logged = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let mut live = Vec::with_capacity(batch.len());
        for a in batch {
            if a.after.iter().any(|t| failed.contains(t)) {
                failed.insert(a.ticket);
                let _ = out.send(PgEvent::Done {
                    ticket: a.ticket,
                    result: Err(Failure::Conflict),
                });
            } else {
                live.push(a);
            }
        }
        if failed.len() > 100_000 {
            let newest = live.iter().map(|a| a.ticket).max().unwrap_or(0);
            failed.retain(|t| *t + 50_000 > newest);
        }
        if live.is_empty() {
            continue;
        }
        if conn.as_ref().is_some_and(|(c, _)| c.is_closed()) {
            conn = None;
        }
        if conn.is_none() && Instant::now() >= next_try {
            match connect_committer(&cfg).await {
                Ok(c) => {
                    info!("postgres: committer connected");
                    down_logged = false;
                    conn = Some(c);
                }
                Err(e) => {
                    if !down_logged {
                        error!(error = %e, "postgres: cannot connect; changes are refused (500) until it is back");
                        down_logged = true;
                    }
                    next_try = Instant::now() + RETRY;
                }
            }
        }
        let fail_all = |live: Vec<PgAppend>, failed: &mut HashSet<u64>, why: &str| {
            for a in live {
                failed.insert(a.ticket);
                let _ = out.send(PgEvent::Done {
                    ticket: a.ticket,
                    result: Err(Failure::Database(why.to_string())),
                });
            }
        };
        let Some((client, stmt)) = &conn else {
            fail_all(live, &mut failed, "the database is unreachable");
            continue;
        };
        let mut body =
            String::with_capacity(live.iter().map(|a| a.item.len() + 1).sum::<usize>() + 2);
        body.push('[');
        for (i, a) in live.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&a.item);
        }
        body.push(']');
        stats.batch_records.observe(live.len() as f64);
        let t0 = Instant::now();
        let r = tokio::time::timeout(COMMIT_TIMEOUT, client.query_one(stmt, &[&node, &body])).await;
        stats.write_seconds.observe(t0.elapsed().as_secs_f64());
        let text: String = match r {
            Ok(Ok(row)) => row.get(0),
            Ok(Err(e)) => {
                warn!(error = %e, writes = live.len(), "postgres: commit failed; changes answered 500");
                if client.is_closed() {
                    conn = None;
                }
                fail_all(live, &mut failed, &e.to_string());
                continue;
            }
            Err(_) => {
                warn!(
                    writes = live.len(),
                    "postgres: commit timed out; changes answered 500, reconnecting"
                );
                conn = None;
                fail_all(live, &mut failed, "commit timed out");
                continue;
            }
        };
        stats.syncs.fetch_add(1, Ordering::Relaxed);
        let outcomes: Vec<Outcome> = match serde_json::from_str(&text) {
            Ok(o) => o,
            Err(e) => {
                error!(error = %e, "postgres: facd_commit answered something unreadable");
                fail_all(live, &mut failed, "unreadable answer");
                continue;
            }
        };
        let mut committed = 0u64;
        for o in outcomes {
            let result = if o.ok {
                committed += 1;
                Ok(o.v.into_iter().collect())
            } else {
                failed.insert(o.t);
                Err(Failure::Conflict)
            };
            let _ = out.send(PgEvent::Done {
                ticket: o.t,
                result,
            });
        }
        stats.records.fetch_add(committed, Ordering::Relaxed);
    }
}

/// One write's outcome in `facd_commit`'s answer.
#[derive(serde::Deserialize)]
struct Outcome {
    t: u64,
    ok: bool,
    #[serde(default)]
    v: std::collections::BTreeMap<String, i64>,
}

async fn connect_committer(
    cfg: &tokio_postgres::Config,
) -> Result<(Client, Statement), tokio_postgres::Error> {
    let client = connect(cfg, None).await?;
    let stmt = client
        .prepare("SELECT facd_commit($1::text, $2::text::jsonb)::text")
        .await?;
    Ok((client, stmt))
}

/// The listener task (module docs).
async fn listener(
    cfg: tokio_postgres::Config,
    node: String,
    mut last_seq: i64,
    mut resync_rx: mpsc::UnboundedReceiver<String>,
    out: mpsc::UnboundedSender<PgEvent>,
    stop: CancellationToken,
) {
    let mut resyncs: Vec<String> = Vec::new();
    let mut down_logged = false;
    loop {
        let (notes_tx, mut notes) = mpsc::unbounded_channel();
        let mut client = match connect(&cfg, Some(notes_tx)).await {
            Ok(c) => c,
            Err(e) => {
                if !down_logged {
                    warn!(error = %e, "postgres: listener cannot connect; retrying");
                    down_logged = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    () = stop.cancelled() => return,
                }
                while let Ok(a) = resync_rx.try_recv() {
                    resyncs.push(a);
                }
                continue;
            }
        };
        if let Err(e) = client.batch_execute("LISTEN facd_changes").await {
            warn!(error = %e, "postgres: LISTEN failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(RETRY) => continue,
                () = stop.cancelled() => return,
            }
        }
        if down_logged {
            info!(
                after = last_seq,
                "postgres: listener reconnected; catching up"
            );
            down_logged = false;
        }
        loop {
            if let Err(e) = catch_up(&client, &node, &mut last_seq, i64::MAX, &out).await {
                warn!(error = %e, "postgres: reading changes failed; reconnecting");
                break;
            }
            let mut broken = false;
            while let Some(agent) = resyncs.pop() {
                match fresh(&mut client, &node, &mut last_seq, &agent, &out).await {
                    Ok(()) => {}
                    Err(e) => {
                        warn!(error = %e, %agent, "postgres: reading an agent failed; reconnecting");
                        resyncs.push(agent);
                        broken = true;
                        break;
                    }
                }
            }
            if broken {
                break;
            }
            // Our own changes need no reading (we skip them): they are read
            // past with the next other node's, or within a second.
            let tick = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(tick);
            loop {
                tokio::select! {
                    n = notes.recv() => match n {
                        None => {
                            warn!("postgres: listener connection lost; reconnecting");
                            down_logged = true;
                            break;
                        }
                        Some(from) if from == node => continue,
                        Some(_) => {}
                    },
                    Some(a) = resync_rx.recv() => resyncs.push(a),
                    () = &mut tick => {}
                    () = stop.cancelled() => return,
                }
                break;
            }
            if down_logged {
                break;
            }
            while notes.try_recv().is_ok() {}
        }
    }
}

/// Reads the changes after `last_seq` up to `upto`, in order; other
/// nodes' go out.
async fn catch_up(
    client: &Client,
    node: &str,
    last_seq: &mut i64,
    upto: i64,
    out: &mpsc::UnboundedSender<PgEvent>,
) -> Result<(), tokio_postgres::Error> {
    loop {
        let rows = client
            .query(
                "SELECT seq, node, versions::text, payload::text FROM facd_changes \
                 WHERE seq > $1 AND seq <= $3 ORDER BY seq LIMIT $2",
                &[&*last_seq, &CATCH_UP_ROWS, &upto],
            )
            .await?;
        let n = rows.len() as i64;
        for r in rows {
            let seq: i64 = r.get(0);
            *last_seq = seq;
            let from: &str = r.get(1);
            if from == node {
                continue;
            }
            let versions: std::collections::BTreeMap<String, i64> =
                serde_json::from_str(r.get(2)).unwrap_or_default();
            let _ = out.send(PgEvent::Remote {
                seq,
                versions: versions.into_iter().collect(),
                payload: r.get(3),
            });
        }
        if n < CATCH_UP_ROWS {
            return Ok(());
        }
    }
}

/// One agent's version and records, read in one snapshot with the last
/// change they reflect; every change up to that one goes out first, so
/// that the fresh rows replace no event and the next change read is newer.
async fn fresh(
    client: &mut Client,
    node: &str,
    last_seq: &mut i64,
    agent: &str,
    out: &mpsc::UnboundedSender<PgEvent>,
) -> Result<(), tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let upto: i64 = tx
        .query_one("SELECT coalesce(max(seq), 0) FROM facd_changes", &[])
        .await?
        .get(0);
    let rows = tx
        .query(
            "SELECT a.version, r.record::text FROM facd_agents a \
             LEFT JOIN facd_records r ON r.agent = a.agent \
             WHERE a.agent = $1 ORDER BY r.key <> 'membership', r.key",
            &[&agent],
        )
        .await?;
    tx.commit().await?;
    let version = rows.first().map_or(0, |r| r.get(0));
    let records = rows
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(1))
        .collect();
    catch_up(client, node, last_seq, upto, out).await?;
    let _ = out.send(PgEvent::Fresh {
        agent: agent.to_string(),
        version,
        records,
    });
    Ok(())
}

/// The wrap-up poller task (module docs).
async fn wrapup_poller(
    cfg: tokio_postgres::Config,
    out: mpsc::UnboundedSender<PgEvent>,
    stop: CancellationToken,
) {
    const CLAIM: &str = "UPDATE facd_wrapups SET claimed_until = $1 + $2 \
        WHERE (agent, queue) IN (SELECT agent, queue FROM facd_wrapups \
            WHERE due <= $1 AND claimed_until < $1 ORDER BY due LIMIT 500 \
            FOR UPDATE SKIP LOCKED) \
        RETURNING agent";
    loop {
        let Ok(client) = connect(&cfg, None).await else {
            tokio::select! {
                () = tokio::time::sleep(RETRY) => continue,
                () = stop.cancelled() => return,
            }
        };
        let stmt = match client.prepare(CLAIM).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "postgres: cannot prepare the wrap-up claim; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep(WRAPUP_POLL) => {}
                () = stop.cancelled() => return,
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            match client.query(&stmt, &[&now, &WRAPUP_LEASE_MS]).await {
                Ok(rows) => {
                    for r in rows {
                        let _ = out.send(PgEvent::WrapUpDue { agent: r.get(0) });
                    }
                }
                Err(e) => {
                    debug!(error = %e, "postgres: wrap-up poll failed; reconnecting");
                    break;
                }
            }
        }
    }
}
