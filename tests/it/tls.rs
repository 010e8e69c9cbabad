//! TLS to the warehouse: `sslmode=verify-full` with a CA file (`sslrootcert`) checks the server's
//! certificate and its host name; `require` (like `prefer`, the default, as libpq) encrypts
//! without checking, which docs/operations.md says. A private PostgreSQL with a certificate
//! signed by a CA made for the test (the openssl command line).

use std::path::Path;
use std::process::Command;

use sessionsync::config::{Secret, WarehouseSettings};
use sessionsync::warehouse::Warehouse;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`{name}.crt`, `{name}.key`) in `dir`.
fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// Whether a connection of `url` works, and what it says when it does not.
async fn connects(url: &str) -> Result<bool, String> {
    let wh = Warehouse::new(&WarehouseSettings {
        url: Secret::new(url),
        schema: "sessionsync".into(),
        pool_size: 2,
        synchronous_commit: false,
    })
    .map_err(|e| e.to_string())?;
    let c = wh.conn().await.map_err(|e| e.to_string())?;
    let row = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn verify_full_checks_the_certificate_and_the_host_name_against_the_ca_file() {
    let dir = std::env::temp_dir().join(format!("sessionsync-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pg_dir = dir.join("pg");
    let pg =
        tokio::task::spawn_blocking(move || sessionsync::pgctl::PrivatePostgres::start(&pg_dir))
            .await
            .unwrap()
            .expect("a private PostgreSQL");
    ca(&dir, "ca");
    ca(&dir, "other-ca");
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
    // The server reads its key only when it is private to the server's user.
    let running_as_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    for f in ["server.key", "server.crt"] {
        let p = dir.join(f);
        if running_as_root {
            assert!(
                Command::new("chown")
                    .arg("postgres")
                    .arg(&p)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let (admin, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    // One statement at a time: ALTER SYSTEM cannot run in a transaction block.
    for stmt in [
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            dir.join("server.crt").display()
        ),
        format!(
            "ALTER SYSTEM SET ssl_key_file = '{}'",
            dir.join("server.key").display()
        ),
        "ALTER SYSTEM SET ssl = on".to_string(),
    ] {
        admin.batch_execute(&stmt).await.unwrap();
    }
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let port = pg.port;
    let url = |host: &str, mode: &str, ca: &str| {
        format!(
            "postgres://postgres@{host}:{port}/postgres?sslmode={mode}&sslrootcert={}",
            dir.join(ca).display()
        )
    };
    // The certificate checks out: TLS, verified.
    assert_eq!(
        connects(&url("localhost", "verify-full", "ca.crt")).await,
        Ok(true)
    );
    // Signed by a CA the file does not hold: refused.
    let e = connects(&url("localhost", "verify-full", "other-ca.crt"))
        .await
        .unwrap_err();
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );
    // The right CA, the wrong name (the certificate is for localhost): refused.
    let e = connects(&url("127.0.0.1", "verify-full", "ca.crt"))
        .await
        .unwrap_err();
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("NotValidFor"),
        "{e}"
    );
    // require (and prefer, the default) encrypt without checking, as libpq does.
    assert_eq!(
        connects(&url("127.0.0.1", "require", "other-ca.crt")).await,
        Ok(true)
    );
    assert_eq!(
        connects(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).await,
        Ok(true),
        "prefer takes TLS when the server offers it"
    );
    drop(admin);
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
}
