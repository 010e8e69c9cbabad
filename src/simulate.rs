//! `sessionsync simulate`: one vendor simulator on a chosen address, with generated data, and
//! the config entry that reads it (the benchmarks and manual trials use it).

use std::net::SocketAddr;

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use sessionsync_sim::superoffice_online::{APPLICATION_KEY_PEM, OnlineCredentials, OnlineSim};

/// The printed config's request rate: the simulators have no rate limit, so it is set high
/// enough that a first sync of the generated sessions takes seconds (the default, 5 per second,
/// is for real vendors).
const SIM_RATE: &str = "requests_per_second = 500    # the simulator has no rate limit; keep the default (5) or the vendor's for a real tenant";

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// takecontrol, superoffice or mluvii
    #[arg(long)]
    pub source: String,
    /// Sessions to generate, spread over the last `--days` days
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    #[arg(long, default_value_t = 7)]
    pub days: i64,
    /// Exactly this many chat messages per Take Control session (default: 0 to 6 at random)
    #[arg(long)]
    pub messages: Option<usize>,
    /// Where to listen
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

/// `sessionsync simulate`: one simulator on a chosen address, with the credentials to use.
pub async fn simulate(args: SimulateArgs) -> anyhow::Result<u8> {
    let now = Utc::now();
    let from = now - TimeDelta::days(args.days.max(1));
    let to = now - TimeDelta::minutes(1);
    let router_and_text = match args.source.as_str() {
        "takecontrol" => {
            let data = sessionsync_sim::takecontrol::generate_with(
                7,
                args.sessions,
                from,
                to,
                args.messages,
            );
            let (router, _) = sessionsync_sim::takecontrol::router("simulated-key", data);
            (router, "api_key = \"simulated-key\"".to_string())
        }
        "mluvii" => {
            let data = sessionsync_sim::mluvii::generate(11, args.sessions, from, to);
            let (router, _) =
                sessionsync_sim::mluvii::router("simulated-user", "simulated-secret", data);
            (
                router,
                "client_id = \"simulated-user\"\nclient_secret = \"simulated-secret\"".to_string(),
            )
        }
        "superoffice" => return superoffice(args, from, to).await,
        other => anyhow::bail!(
            "--source {other}: choose one of {}",
            crate::sources::names().join(", ")
        ),
    };
    let (router, creds) = router_and_text;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    crate::outln!(
        "{} simulator with {} sessions at http://{addr}\nconfig:\n[[{}]]\naccount = \"sim\"\nbase_url = \"http://{addr}\"\n{creds}\nstart = \"{}\"\n{SIM_RATE}",
        args.source,
        args.sessions,
        args.source,
        from.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let shutdown = crate::shutdown::shutdown_on_signals();
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(0)
}

/// SuperOffice Online: the environment's host (system user flow, JWKS, state API) on `--listen`,
/// the tenant on two hosts of its own; the config uses the system user flow.
async fn superoffice(
    args: SimulateArgs,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
) -> anyhow::Result<u8> {
    let mut data = sessionsync_sim::superoffice::seed_samples();
    data.extend(sessionsync_sim::superoffice::generate(
        13,
        args.sessions,
        from,
        to,
    ));
    let creds = OnlineCredentials::default();
    let sim = OnlineSim::start_at(creds.clone(), data, args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    // Tickets run out as real ones do (after 6 idle hours at SuperOffice; here after 500
    // requests), so that a sync renews them.
    sim.set_ticket_budget(500);
    let env = sim.environment_url();
    crate::outln!(
        "superoffice simulator (SuperOffice Online) with {} sessions: environment (system user flow, JWKS, state API) at {env}, tenant {} on {} (it may move to {})",
        args.sessions,
        creds.context,
        sim.current_root(),
        sim.hosts[1].base_url()
    );
    crate::outln!(
        "tickets expire after 500 requests; on request: curl -X POST '{env}/sim/maintenance?seconds=60' (a maintenance window), curl -X POST {env}/sim/move (the tenant moves host), curl -X POST {env}/sim/expire-tickets"
    );
    crate::outln!(
        "config:\n[[superoffice]]\naccount = \"sim\"\nenvironment = \"{env}\"\ncontext_identifier = \"{}\"\napp_token = \"{}\"\nsystem_user_token = \"{}\"\nprivate_key = \'\'\'\n{}\'\'\'\nstart = \"{}\"\n{SIM_RATE}",
        creds.context,
        creds.app_token,
        creds.system_user_token,
        APPLICATION_KEY_PEM,
        from.format("%Y-%m-%dT%H:%M:%SZ")
    );
    crate::shutdown::shutdown_on_signals().cancelled().await;
    drop(sim);
    Ok(0)
}
