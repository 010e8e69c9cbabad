//! `sessionsync demo`: the whole pipeline with no credentials. The simulators run in-process
//! with a generated week of sessions each; the warehouse is `DATABASE_URL`, else the local
//! server (`postgres://postgres@127.0.0.1:5432`), in a database it creates (`--database`, default
//! `sessionsync_demo`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use chrono::{TimeDelta, Utc};

use crate::config::{
    Account, HttpSettings, Schedule, Secret, Settings, StreamSettings, WarehouseSettings,
};
use crate::engine::Stream;
use crate::sources::mluvii::MluviiSettings;
use crate::sources::superoffice::config::SystemUserConfig;
use crate::sources::superoffice::system_user::PrivateKey;
use crate::sources::superoffice::{SuperOfficeAuth, SuperOfficeMode, SuperOfficeSettings};
use crate::sources::takecontrol::{OutputFormat, TakeControlApi, TakeControlSettings};
use crate::telemetry::Metrics;
use crate::warehouse::Warehouse;
use sessionsync_sim::mluvii::MluviiSim;
use sessionsync_sim::superoffice_online::{APPLICATION_KEY_PEM, OnlineCredentials, OnlineSim};
use sessionsync_sim::takecontrol::{TakeControlSim, generate};

use crate::warehouse::bootstrap::{LOCAL_DEFAULT_URL, ensure_named_database, reachable};

mod pushes;
mod summary;
use pushes::{live_change, show_pushes};
pub use summary::{FIRST_QUERY, FIRST_QUERY_WHY, summary};
const DEMO_DB: &str = "sessionsync_demo";

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Sync once, print the summary and exit
    #[arg(long)]
    pub once: bool,
    /// Sessions the Take Control simulator generates (mluvii and SuperOffice get a quarter as
    /// many each: every one of their sessions costs two requests)
    #[arg(long, default_value_t = 2000)]
    pub sessions: usize,
    /// Which simulated sources to sync (comma-separated)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "takecontrol,superoffice,mluvii"
    )]
    pub sources: Vec<String>,
    /// Use a private PostgreSQL cluster (under .sessionsync/demo-postgres) even if a server runs
    #[arg(long)]
    pub private_postgres: bool,
    /// Where metrics and health are served while the demo keeps running
    #[arg(long, default_value = "127.0.0.1:9898")]
    pub listen: SocketAddr,
    /// The database (on the server of DATABASE_URL) the demo creates if missing and whose
    /// `sessionsync` schema it resets (the compose stack points it at its own `warehouse`)
    #[arg(long, default_value = DEMO_DB)]
    pub database: String,
}

/// Where the demo's private cluster lives.
pub const PRIVATE_PG_DIR: &str = ".sessionsync/demo-postgres";

pub async fn run(args: DemoArgs) -> anyhow::Result<u8> {
    let (admin_url, private) = choose_server(args.private_postgres).await?;
    let url = ensure_named_database(&admin_url, &args.database).await?;
    let sims = Sims::start(args.sessions).await?;
    let settings = sims.settings(url, args.listen);
    // The demo owns its database: start from an empty schema so the generated data and the
    // watermarks always agree.
    Warehouse::new(&settings.warehouse)?
        .conn()
        .await?
        .batch_execute("DROP SCHEMA IF EXISTS sessionsync CASCADE")
        .await
        .context("resetting the demo schema")?;
    let crate::startup::Pipeline {
        metrics,
        warehouse: wh,
        engine,
        mut sources,
    } = crate::startup::start_all(&settings).await?;
    for name in &args.sources {
        if !crate::sources::names().contains(&name.as_str()) {
            anyhow::bail!(
                "--sources: `{name}` is not a source; choose from {}",
                crate::sources::names().join(", ")
            );
        }
    }
    sources.retain(|s| args.sources.iter().any(|n| n == s.key().source));
    let shutdown = crate::shutdown::shutdown_on_signals();
    sims.describe();
    let reports = sync_each(&engine, &sources, &shutdown).await?;
    let webhooks = start_webhooks(&sources, &settings, &metrics, &shutdown).await?;
    let pushing = webhooks.is_some();
    if pushing {
        show_pushes(&sims.so_online.tenant, &sims.ml, &wh, &args.sources).await?;
    }
    // What only an audit finds: a session indexed late (four days back, behind every lookback)
    // and one deleted outright, in each simulator.
    sims.late_and_gone();
    let audits = audit_each(&engine, &sources, &shutdown).await?;
    crate::out!("{}", summary(&wh, &args.database).await?);
    crate::outln!(
        "\nAudit against each vendor's own list (sessionsync audit; the daemon's is daily):"
    );
    for a in &audits {
        crate::outln!("  {}", audit_line(a));
    }
    if let Some(pg) = &private {
        crate::outln!(
            "(That is the private PostgreSQL on 127.0.0.1:{}, data in {PRIVATE_PG_DIR}; it runs while the demo does: psql -h 127.0.0.1 -p {} -U postgres -d {})",
            pg.port,
            pg.port,
            args.database
        );
    }
    if args.once {
        shutdown.cancel();
        stop_webhooks(webhooks).await;
        let failed_audit = audits
            .iter()
            .any(|a| a.outcome == crate::engine::Outcome::Failed);
        return Ok(match crate::report::exit_code(&reports) {
            0 if failed_audit => 1,
            code => code,
        });
    }
    drop(engine);
    let daemon =
        crate::daemon::Daemon::build(&settings, metrics, sources, shutdown.clone()).await?;
    let addr = daemon.server_addr();
    crate::outln!(
        "\nKeeps syncing every minute. Metrics: http://{addr}/metrics   Health: http://{addr}/readyz   Stop: Ctrl-C"
    );
    if pushing {
        crate::outln!(
            "Webhooks: the simulators change a session every 10 s and push it; each lands within a second (log: \"webhook events applied\")."
        );
        tokio::spawn(sims.keep_changing(shutdown.clone()));
    }
    let stopped = daemon.run_until_stopped().await;
    stop_webhooks(webhooks).await;
    stopped?;
    Ok(0)
}

/// Waits for the demo's webhook listener and worker to stop (after shutdown).
async fn stop_webhooks(
    webhooks: Option<(crate::webhooks::Listening, tokio::task::JoinHandle<()>)>,
) {
    if let Some((hooks, worker)) = webhooks {
        let _ = worker.await;
        hooks.stopped().await;
    }
}

/// The server to use: `DATABASE_URL`, else one on the local default, else a private cluster
/// (returned too: it stops when dropped).
async fn choose_server(
    private_only: bool,
) -> anyhow::Result<(String, Option<crate::pgctl::PrivatePostgres>)> {
    let explicit = std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty());
    if let Some(u) = explicit.filter(|_| !private_only) {
        return Ok((u, None));
    }
    if !private_only && reachable(LOCAL_DEFAULT_URL).await {
        return Ok((LOCAL_DEFAULT_URL.to_string(), None));
    }
    crate::outln!(
        "No PostgreSQL server to use: starting a private one in {PRIVATE_PG_DIR} (stopped when the demo ends)"
    );
    let dir = std::path::PathBuf::from(PRIVATE_PG_DIR);
    let pg = tokio::task::spawn_blocking(move || crate::pgctl::PrivatePostgres::start(&dir))
        .await
        .context("starting the private PostgreSQL")??;
    Ok((pg.url(), Some(pg)))
}

/// Audits each stream's account over the last 7 closed days, in turn.
async fn audit_each(
    engine: &crate::engine::Engine,
    sources: &[Arc<Stream>],
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<crate::engine::AuditReport>> {
    let options = crate::engine::AuditOptions {
        days: crate::engine::Days::last(7, Utc::now()),
        dry_run: false,
    };
    let mut out = Vec::new();
    for s in sources {
        out.push(engine.audit(s, options, shutdown, &|_| {}).await?);
    }
    Ok(out)
}

/// An audit's line in the demo's summary: short (the summary fits a terminal's screen).
fn audit_line(a: &crate::engine::AuditReport) -> String {
    let name = format!("{}/{}", a.key.source, a.key.account);
    match (&a.error, a.complete()) {
        (Some(e), _) => format!("{name:<22} failed: {e}"),
        (None, complete) => format!(
            "{name:<22} listed {}, stored {}, missing {} (now stored), gone {} (flagged){}",
            a.listed(),
            a.stored(),
            a.missing(),
            a.gone(),
            if complete {
                ""
            } else {
                "; some days not listed completely"
            }
        ),
    }
}

/// Runs each stream once, in turn, a live bar for each on a terminal, and prints its line.
async fn sync_each(
    engine: &crate::engine::Engine,
    sources: &[Arc<Stream>],
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<crate::engine::RunReport>> {
    let mut reports = Vec::new();
    let bars = crate::report::StreamBars::new(sources);
    for (i, s) in sources.iter().enumerate() {
        let show = |p: &crate::engine::Progress| bars.show(i, p, false);
        let r = engine
            .run(s, crate::engine::Range::Regular, shutdown, &show)
            .await;
        bars.finish(i);
        let r = r?;
        bars.println(&crate::report::describe(&r));
        reports.push(r);
    }
    Ok(reports)
}

const TC_KEY: &str = "demo-integration-key";
/// Requests a simulated SuperOffice ticket answers before it expires.
const SO_TICKET_REQUESTS: i64 = 100;
const ML_CLIENT: (&str, &str) = ("demo-api-user", "demo-client-secret");
/// The id of each simulator's late-indexed session.
const LATE_ID: i64 = 900_000;

/// The three simulators with a generated week each.
struct Sims {
    tc: TakeControlSim,
    /// SuperOffice Online: the environment's host (system user flow, state API) and two
    /// tenant hosts; the demo's account uses the system user flow.
    so_online: OnlineSim,
    ml: MluviiSim,
    start: chrono::DateTime<Utc>,
    sessions: usize,
    /// mluvii and SuperOffice sessions (each costs two requests: a quarter as many).
    others: usize,
}

impl Sims {
    async fn start(sessions: usize) -> anyhow::Result<Sims> {
        let now = Utc::now();
        let start = now - TimeDelta::days(7);
        let until = now - TimeDelta::minutes(1);
        let tc = TakeControlSim::start(TC_KEY, generate(7, sessions, start, until))
            .await
            .context("starting the Take Control simulator")?;
        let others = (sessions / 4).max(1);
        let ml = MluviiSim::start(
            ML_CLIENT.0,
            ML_CLIENT.1,
            sessionsync_sim::mluvii::generate(11, others, start, until),
        )
        .await
        .context("starting the mluvii simulator")?;
        let mut chats = sessionsync_sim::superoffice::seed_samples();
        chats.extend(sessionsync_sim::superoffice::generate(
            13, others, start, until,
        ));
        let so_online = OnlineSim::start(OnlineCredentials::default(), chats)
            .await
            .context("starting the SuperOffice Online simulator")?;
        // Tickets run out as real ones do (SuperOffice's after 6 idle hours; here after 100
        // requests): the demo's sync renews them as it goes.
        so_online.set_ticket_budget(SO_TICKET_REQUESTS);
        // Indexed late: held by each vendor, listed only after the first sync, four days back.
        let late = now - TimeDelta::days(4);
        tc.index_late(sessionsync_sim::takecontrol::SimSession::new(
            LATE_ID,
            late.naive_utc(),
            Some((late + TimeDelta::minutes(25)).naive_utc()),
        ));
        let mut ml_late =
            sessionsync_sim::mluvii::generate(17, 1, late, late + TimeDelta::hours(1)).remove(0);
        ml_late.id = LATE_ID;
        ml_late.status = Some("CLOSED".into());
        ml.index_late(ml_late);
        let mut so_late =
            sessionsync_sim::superoffice::generate(19, 1, late, late + TimeDelta::hours(1))
                .remove(0);
        so_late.entity["ChatSessionId"] = serde_json::json!(LATE_ID);
        so_late.entity["Status"] = serde_json::json!("Closed");
        so_late.messages.clear();
        so_late.updated = late + TimeDelta::hours(1);
        so_online.tenant.index_late(so_late);
        Ok(Sims {
            tc,
            so_online,
            ml,
            start,
            sessions,
            others,
        })
    }

    /// After the first sync: the late sessions appear (with their old dates), and one stored
    /// session of each vendor, three days back, is deleted outright (no event, no trace).
    fn late_and_gone(&self) {
        self.tc.reveal(LATE_ID);
        self.ml.reveal(LATE_ID);
        self.so_online.tenant.reveal(LATE_ID);
        let now = Utc::now();
        let (from, to) = (now - TimeDelta::days(4), now - TimeDelta::days(2));
        let within = |t: chrono::DateTime<Utc>| t >= from && t < to;
        if let Some(s) = self
            .tc
            .sessions()
            .iter()
            .find(|s| s.id != LATE_ID && within(s.start.and_utc()))
        {
            self.tc.delete(s.id);
        }
        if let Some(s) = self
            .ml
            .sessions()
            .iter()
            .find(|s| s.id != LATE_ID && within(s.created))
        {
            self.ml.remove(s.id);
        }
        let requested = |c: &sessionsync_sim::superoffice::SimChat| {
            c.entity["WhenRequested"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        if let Some(c) = self
            .so_online
            .tenant
            .chats()
            .iter()
            .find(|c| c.id() != LATE_ID && requested(c).is_some_and(within))
        {
            self.so_online.tenant.purge(c.id());
        }
    }

    fn describe(&self) {
        crate::outln!("sessionsync demo: simulators with generated data");
        crate::outln!(
            "  Take Control  {}  {} sessions",
            self.tc.base_url(),
            self.sessions
        );
        crate::outln!(
            "  SuperOffice   {}  {} chats (3 seed samples); SuperOffice Online, system user flow at {}",
            self.so_online.current_root(),
            self.others + 3,
            self.so_online.environment_url()
        );
        crate::outln!(
            "  mluvii        {}  {} sessions",
            self.ml.base_url(),
            self.others
        );
    }

    /// A config with one account per simulator, webhooks on for SuperOffice and mluvii.
    fn settings(&self, url: String, listen: SocketAddr) -> Settings {
        let stream = StreamSettings {
            account: "demo".into(),
            enabled: true,
            schedule: Schedule::parse("* * * * *").expect("a constant schedule"),
            start: self.start,
            lookback: std::time::Duration::from_secs(3600),
            window: std::time::Duration::from_secs(86400),
            privacy: crate::privacy::Overrides::default(),
            expect_data_within: None,
            audit: true,
        };
        let http = |rps: f64| HttpSettings {
            timeout: std::time::Duration::from_secs(30),
            max_retries: 5,
            max_retry_wait: std::time::Duration::from_secs(30),
            requests_per_second: rps,
            max_response_mb: 256,
        };
        let url_of = |u: String| -> reqwest::Url { u.parse().expect("a simulator's own URL") };
        Settings {
            file: "(demo)".into(),
            warehouse: WarehouseSettings {
                url: Secret::new(url),
                schema: "sessionsync".into(),
                pool_size: 5,
                synchronous_commit: false,
            },
            server: crate::config::ServerSettings { listen },
            engine: crate::config::EngineSettings {
                max_concurrent_streams: 3,
            },
            webhooks: None,
            privacy: demo_privacy(),
            audit: crate::config::AuditSettings::default(),
            accounts: vec![
                Account {
                    kind: &crate::sources::superoffice::KIND,
                    stream: StreamSettings {
                        // Early enough for the seed documents' own samples (2001–2023) to land too.
                        start: "2000-01-01T00:00:00Z".parse().expect("a constant date"),
                        ..stream.clone()
                    },
                    http: http(1000.0),
                    settings: Arc::new(SuperOfficeSettings {
                        auth: SuperOfficeAuth::SystemUser(SystemUserConfig {
                            environment: url_of(self.so_online.environment_url()),
                            context_identifier: self.so_online.creds.context.clone(),
                            app_token: Secret::new(self.so_online.creds.app_token.clone()),
                            system_user_token: Secret::new(
                                self.so_online.creds.system_user_token.clone(),
                            ),
                            private_key: PrivateKey::parse(APPLICATION_KEY_PEM)
                                .expect("the simulator's key"),
                        }),
                        mode: SuperOfficeMode::Archive,
                        messages: true,
                        concurrency: 8,
                        page_size: 1000,
                        webhook_secret: Some(Secret::new("demo-webhook-secret")),
                        timezone: chrono_tz::UTC,
                    }),
                },
                Account {
                    kind: &crate::sources::mluvii::KIND,
                    stream: stream.clone(),
                    http: http(1000.0),
                    settings: Arc::new(MluviiSettings {
                        base_url: url_of(self.ml.base_url()),
                        client_id: ML_CLIENT.0.into(),
                        client_secret: Secret::new(ML_CLIENT.1),
                        concurrency: 8,
                        page_size: 1000,
                        max_open_age: std::time::Duration::from_secs(7 * 86400),
                        webhook: Some(crate::sources::mluvii::config::BasicCredentials {
                            user: "demo-hook".into(),
                            password: Secret::new("demo-hook-password"),
                        }),
                    }),
                },
                Account {
                    kind: &crate::sources::takecontrol::KIND,
                    stream,
                    http: http(20.0),
                    settings: Arc::new(TakeControlSettings {
                        api: TakeControlApi::Rest,
                        base_url: url_of(self.tc.base_url()),
                        api_key: Secret::new(TC_KEY),
                        timezone: chrono_tz::UTC,
                        output_format: OutputFormat::Xml,
                    }),
                },
            ],
        }
    }

    /// A change in each pushing simulator every 10 s, until `stop`.
    async fn keep_changing(self, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        tick.tick().await;
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            n += 1;
            live_change(&self.so_online.tenant, &self.ml, n);
        }
    }
}

/// Starts the webhook listener (loopback, any port) and worker for the sources that take
/// webhooks, and registers each with its simulator exactly as `sessionsync webhooks register`
/// would; `None` when no selected source takes webhooks.
async fn start_webhooks(
    sources: &[Arc<Stream>],
    settings: &Settings,
    metrics: &Arc<Metrics>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<(crate::webhooks::Listening, tokio::task::JoinHandle<()>)>> {
    if sources.iter().all(|s| s.webhook().is_none()) {
        return Ok(None);
    }
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let hooks =
        crate::webhooks::listen(loopback, sources, &settings.warehouse, metrics, shutdown).await?;
    let worker = hooks.work();
    let public: reqwest::Url = format!("http://{}", hooks.addr).parse()?;
    hooks
        .register_all(&public)
        .await
        .map_err(anyhow::Error::msg)
        .context("registering the webhooks with the simulators")?;
    Ok(Some((hooks, worker)))
}

/// The demo's `[privacy]`: customer identity hashed (names, e-mails, phones: still countable
/// and joinable across the three systems), under a key made for this run.
pub fn demo_privacy() -> crate::privacy::PrivacySettings {
    let mut policies = crate::privacy::Policies::default();
    policies.set(
        crate::privacy::Class::CustomerIdentity,
        crate::privacy::Policy::Hash,
    );
    let key: [u8; 32] = rand::random();
    crate::privacy::PrivacySettings {
        policies,
        hash_key: Some(Secret::new(
            key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        )),
        previous_hash_keys: Vec::new(),
        retain_sessions: None,
        retain_transcripts: None,
    }
}
