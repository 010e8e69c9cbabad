//! A database to work in, for the demo, the examples and the test harness: the local server's
//! default URL, whether a server answers there, and a named database created on a server.

use std::time::Duration;

use super::settings::WarehouseSettings;
use super::{Warehouse, WarehouseError};
use crate::secret::Secret;

/// The server used when `DATABASE_URL` is not set: a local PostgreSQL with trust auth.
pub const LOCAL_DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A named database could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("`{name}` cannot be a database name: {detail}")]
    Name { name: String, detail: String },
    #[error(
        "no PostgreSQL server to create `{name}` on: {source} (start one locally with trust auth for user postgres, or set DATABASE_URL)"
    )]
    Server {
        name: String,
        #[source]
        source: WarehouseError,
    },
    #[error("the server URL is not a URL ({0}): use postgres://user@host:port/database")]
    Url(String),
}

/// True when a server answers at `url` within three seconds.
pub async fn reachable(url: &str) -> bool {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    matches!(
        tokio::time::timeout(Duration::from_secs(3), connect).await,
        Ok(Ok(_))
    )
}

/// Creates database `name` on the server of `admin_url` unless it exists; its URL.
pub async fn ensure_named_database(admin_url: &str, name: &str) -> Result<String, BootstrapError> {
    super::settings::validate_identifier(name).map_err(|detail| BootstrapError::Name {
        name: name.into(),
        detail,
    })?;
    let server = |source| BootstrapError::Server {
        name: name.into(),
        source,
    };
    let admin = Warehouse::new(&WarehouseSettings {
        url: Secret::new(admin_url),
        schema: "public".into(),
        pool_size: 1,
        synchronous_commit: false,
    })
    .map_err(server)?;
    let conn = admin.conn().await.map_err(server)?;
    let exists = conn
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| server(WarehouseError::query("looking for the database")(e)))?
        .is_some();
    if !exists {
        // `name` was validated as an identifier above.
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| server(WarehouseError::query("creating the database")(e)))?;
    }
    let mut url = reqwest::Url::parse(admin_url).map_err(|e| BootstrapError::Url(e.to_string()))?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}
