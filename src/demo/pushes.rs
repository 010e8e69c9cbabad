//! The demo's live changes: one per simulator that pushes webhooks, and how soon each
//! reaches the warehouse with no sync run.

use chrono::Utc;
use sessionsync_sim::mluvii::MluviiSim;
use sessionsync_sim::superoffice::SuperOfficeSim;

use crate::warehouse::Warehouse;

/// One change in each simulator that pushes: a SuperOffice message, a new mluvii session.
pub(super) fn live_change(so: &SuperOfficeSim, ml: &MluviiSim, n: u64) -> (i64, i64, i64) {
    let chats = so.chats();
    let chat = chats[(n as usize * 7) % chats.len()].id();
    let message = so.post_message(chat, &format!("Live message #{n} from the demo"));
    let session = ml.sessions().iter().map(|s| s.id).max().unwrap_or(0) + 1;
    ml.upsert(sessionsync_sim::mluvii::SimSession::new(
        session,
        Utc::now(),
    ));
    (chat, message, session)
}

/// Makes one live change per pushing simulator and prints how soon each reached the warehouse,
/// with no sync run in between.
pub(super) async fn show_pushes(
    so: &SuperOfficeSim,
    ml: &MluviiSim,
    wh: &Warehouse,
    selected: &[String],
) -> anyhow::Result<()> {
    let conn = wh.conn().await?;
    let changed = std::time::Instant::now();
    let (chat, message, session) = live_change(so, ml, 0);
    crate::outln!(
        "
Webhooks (the simulators push changes as the vendors do):"
    );
    let checks: [(&str, String, String); 2] = [
        (
            "superoffice",
            format!(
                "SELECT count(*) FROM superoffice_chat_messages WHERE chat_message_id = {message}"
            ),
            format!("SuperOffice: a new message in chat {chat}"),
        ),
        (
            "mluvii",
            format!("SELECT count(*) FROM mluvii_sessions WHERE session_id = {session}"),
            format!("mluvii: session {session} created"),
        ),
    ];
    for (source, sql, what) in checks {
        if !selected.iter().any(|s| s == source) {
            continue;
        }
        let landed = loop {
            let n: i64 = conn.query_one(&sql, &[]).await?.get(0);
            if n > 0 {
                break Some(changed.elapsed());
            }
            if changed.elapsed() > std::time::Duration::from_secs(10) {
                break None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        match landed {
            Some(d) => crate::outln!(
                "  {what}: in the warehouse {:.2} s later, without a sync run",
                d.as_secs_f64()
            ),
            None => crate::outln!("  {what}: not in the warehouse after 10 s (see the log)"),
        }
    }
    Ok(())
}
