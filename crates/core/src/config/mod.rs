//! Configuration: the TOML file of `operations.md`, read and validated once at start.
//!
//! Loading happens in three steps so that an error can never echo a secret:
//! 1. the file is parsed as TOML as written (it holds `${VAR}` placeholders, not their values);
//! 2. `${VAR}` is replaced inside string values only, from the environment;
//! 3. the tree is deserialized into the raw structs (unknown keys are errors, with their path),
//!    then validated into [`Settings`], whose secrets are [`Secret`]s.

use std::path::{Path, PathBuf};

pub use crate::secret::Secret;
pub use crate::settings::*;

mod entries;
mod fields;
mod sections;
mod substitute;

pub use entries::*;
pub use fields::*;
use sections::{RawFile, SECTIONS, validate};
use substitute::{line_col, substitute};

/// Where the config file is looked for when neither `--config` nor `$SESSIONSYNC_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/sessionsync.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// There is no file at the path (the OS's words are not repeated: a chain printer would say
    /// them twice).
    #[error(
        "config file {file} does not exist ({}). Start from config/sessionsync.example.toml (every key, commented), or try a first sync against a simulator: `sessionsync simulate --source superoffice` prints an entry to paste",
        origin.said()
    )]
    Missing { file: PathBuf, origin: ConfigOrigin },
    /// The file is there but cannot be read (permissions, a directory ...).
    #[error("cannot read config file {file} ({}): {detail}", origin.said())]
    Read {
        file: PathBuf,
        origin: ConfigOrigin,
        detail: String,
    },
    #[error("config file {file} is not valid TOML at line {line}, column {column}: {message}")]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config file {file}, key `{key}`: {problem}")]
    Invalid {
        file: PathBuf,
        key: String,
        problem: String,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub file: PathBuf,
    pub warehouse: WarehouseSettings,
    pub server: ServerSettings,
    pub engine: EngineSettings,
    /// The webhook listener; `None` when `[webhooks]` is absent (webhooks off).
    pub webhooks: Option<WebhookSettings>,
    /// `[privacy]`: the policy per class of personal data, the hash key, the storage limits.
    pub privacy: crate::privacy::PrivacySettings,
    /// `[audit]`: the daemon's daily completeness audit.
    pub audit: AuditSettings,
    /// Every configured account of every source, in the order of the sources' registry and
    /// then of the file.
    pub accounts: Vec<Account>,
}

/// A key of the file (e.g. `mluvii[0].page_size`) and what is wrong with it.
pub type KeyProblem = (String, String);

/// Where the config file's path came from, for what an error says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// `--config FILE`.
    Flag,
    /// `$SESSIONSYNC_CONFIG`.
    Env,
    /// Neither: [`DEFAULT_CONFIG_PATH`].
    Default,
}

impl ConfigOrigin {
    fn said(self) -> &'static str {
        match self {
            ConfigOrigin::Flag => "given with --config",
            ConfigOrigin::Env => "named by $SESSIONSYNC_CONFIG",
            ConfigOrigin::Default => {
                "the default path: pass --config FILE or set SESSIONSYNC_CONFIG to use another"
            }
        }
    }
}

/// Which file to read: `--config`, else `$SESSIONSYNC_CONFIG`, else [`DEFAULT_CONFIG_PATH`].
pub fn resolve_path(cli: Option<&Path>) -> PathBuf {
    resolve(cli).0
}

/// [`resolve_path`], and where the path came from.
pub fn resolve(cli: Option<&Path>) -> (PathBuf, ConfigOrigin) {
    if let Some(p) = cli {
        return (p.to_path_buf(), ConfigOrigin::Flag);
    }
    match std::env::var_os("SESSIONSYNC_CONFIG") {
        Some(v) if !v.is_empty() => (PathBuf::from(v), ConfigOrigin::Env),
        _ => (PathBuf::from(DEFAULT_CONFIG_PATH), ConfigOrigin::Default),
    }
}

impl Settings {
    /// Reads, substitutes, deserializes and validates `file`, taking `${VAR}` values and
    /// `DATABASE_URL` from the process environment; `sources` reads the sources' entries
    /// (`crate::sources::configs()`).
    pub fn load(file: &Path, sources: &[&'static SourceKind]) -> Result<Self, ConfigError> {
        Self::load_from(file, ConfigOrigin::Flag, sources)
    }

    /// [`Settings::load`], saying where the path came from when it cannot be read.
    pub fn load_from(
        file: &Path,
        origin: ConfigOrigin,
        sources: &[&'static SourceKind],
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ConfigError::Missing {
                file: file.to_path_buf(),
                origin,
            },
            _ => ConfigError::Read {
                file: file.to_path_buf(),
                origin,
                detail: e.to_string(),
            },
        })?;
        Self::from_toml(file, &text, &|name| std::env::var(name).ok(), sources)
    }

    /// As [`Settings::load`], from text and an explicit environment (tests use this).
    pub fn from_toml(
        file: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        sources: &[&'static SourceKind],
    ) -> Result<Self, ConfigError> {
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            key: key.to_string(),
            problem,
        };
        let mut tree: toml::Value = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError::Syntax {
                file: file.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        let mut substituted = Vec::new();
        let mut unset = Vec::new();
        substitute(&mut tree, String::new(), env, &mut substituted, &mut unset);
        // An error about a value that came from the environment names the key and the
        // variable, never the value (substitute::without_values). A variable that is not set is
        // said unless the file has another problem first (a misspelled key hides behind it
        // otherwise), and a near miss of a known key gets a suggestion.
        let read = self::read(file, tree, env, sources, &substituted);
        match (read, unset.first()) {
            (Ok(settings), None) => Ok(settings),
            // A misspelled key is the problem to fix first, whatever its value holds.
            (Err(ConfigError::Invalid { key, problem, .. }), Some((at, why)))
                if !problem.starts_with("unknown")
                    && (key == *at || key.starts_with(&format!("{at}."))) =>
            {
                Err(invalid(at, why.explain()))
            }
            (Ok(_), Some((at, why))) => Err(invalid(at, why.explain())),
            (Err(e), _) => Err(e),
        }
    }
}

/// The substituted tree's sections and entries, read and validated.
fn read(
    file: &Path,
    mut tree: toml::Value,
    env: &dyn Fn(&str) -> Option<String>,
    sources: &[&'static SourceKind],
    substituted: &[substitute::Substituted],
) -> Result<Settings, ConfigError> {
    {
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            key: key.to_string(),
            problem: suggest(&substitute::without_values(key, problem, substituted)),
        };
        // The sources' entries are read by the sources; the rest is the file's own sections.
        let mut entries = Vec::new();
        if let toml::Value::Table(t) = &mut tree {
            for source in sources {
                match t.remove(source.name) {
                    None => {}
                    Some(toml::Value::Array(list)) => entries.push((*source, list)),
                    Some(_) => {
                        return Err(invalid(
                            source.name,
                            format!("write each account as a [[{}]] entry", source.name),
                        ));
                    }
                }
            }
            if let Some(unknown) = t.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
                let known: Vec<&str> = SECTIONS
                    .iter()
                    .copied()
                    .chain(sources.iter().map(|s| s.name))
                    .collect();
                return Err(invalid(
                    unknown,
                    format!(
                        "unknown section `{unknown}`; the file knows {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        let raw: RawFile = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." {
                "(top level)".to_string()
            } else {
                path
            };
            invalid(&key, e.into_inner().to_string())
        })?;
        validate(file, raw, env, entries).map_err(|e| match e {
            ConfigError::Invalid { key, problem, .. } => invalid(&key, problem),
            other => other,
        })
    }
}

/// "did you mean `schedule`?" after a problem that names an unknown key or section (the word
/// in backquotes after "unknown") and the known ones (the other words in backquotes, or a list
/// after "knows"), when one is close: at most two edits away (transpositions count one,
/// strsim's Damerau-Levenshtein) and not most of the word, or very similar (Jaro-Winkler 0.85).
fn suggest(problem: &str) -> String {
    if !problem.contains("unknown") {
        return problem.to_string();
    }
    let problem = problem.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(at) = problem.find("unknown") else {
        return problem;
    };
    let Some(unknown) = problem[at..].split('`').nth(1).map(str::to_string) else {
        return problem;
    };
    let mut known: Vec<&str> = problem
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| *k != unknown)
        .collect();
    if let Some(list) = problem.split("the file knows ").nth(1) {
        known.extend(list.split(", ").map(str::trim));
    }
    let close = |k: &str| {
        let edits = strsim::damerau_levenshtein(&unknown, k);
        (edits <= 2 && edits * 2 < unknown.chars().count().max(2))
            || strsim::jaro_winkler(&unknown, k) >= 0.85
    };
    let best = known
        .iter()
        .filter(|k| close(k))
        .min_by_key(|k| strsim::damerau_levenshtein(&unknown, k));
    match best {
        Some(k) => format!("{problem}; did you mean `{k}`?"),
        None => problem,
    }
}

impl Settings {
    /// The accounts that are enabled.
    pub fn enabled(&self) -> impl Iterator<Item = &Account> {
        self.accounts.iter().filter(|a| a.stream.enabled)
    }
}
