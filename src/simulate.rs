//! `sessionsync simulate`: one vendor simulator on a chosen address, with generated data, and
//! the config entry that reads it (the benchmarks and manual trials use it).

use std::net::SocketAddr;

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use sessionsync_sim::superoffice::SimCredentials;

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
        "superoffice" => {
            let mut data = sessionsync_sim::superoffice::seed_samples();
            data.extend(sessionsync_sim::superoffice::generate(
                13,
                args.sessions,
                from,
                to,
            ));
            let creds = SimCredentials {
                ticket: "simulated-ticket".into(),
                app_token: "simulated-app-token".into(),
                bearer: "simulated-bearer".into(),
            };
            let (router, _) = sessionsync_sim::superoffice::router(creds, data);
            (
                router,
                "ticket = \"simulated-ticket\"\napp_token = \"simulated-app-token\"".to_string(),
            )
        }
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
        "{} simulator with {} sessions at http://{addr}\nconfig:\n[[{}]]\naccount = \"sim\"\nbase_url = \"http://{addr}\"\n{creds}\nstart = \"{}\"",
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
