//! Embeds the migrations: every `sql/NNNN_name.sql` (at the workspace root), in file-name order, becomes one entry of
//! `warehouse::MIGRATIONS` (so adding a migration is adding its file).

use std::fmt::Write as _;

fn main() {
    println!("cargo:rerun-if-changed=../../sql");
    // The manifest directory of this build, read when the script runs (not when it was
    // compiled: a cached script may be reused for a copy of the tree in another place).
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&manifest).join("../../sql");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    let mut out = String::from("&[\n");
    for name in &names {
        let version = name.trim_end_matches(".sql");
        assert!(
            version.len() > 5 && version[..4].bytes().all(|b| b.is_ascii_digit()),
            "sql/{name}: a migration is named NNNN_what.sql"
        );
        writeln!(
            out,
            "    ({version:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/../../sql/{name}\"))),"
        )
        .expect("writing to a String");
    }
    out.push(']');
    let target = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("migrations.rs");
    std::fs::write(&target, out).unwrap_or_else(|e| panic!("writing {}: {e}", target.display()));
}
