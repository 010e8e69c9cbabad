//! `${VAR}` in the config's string values, replaced from the environment after the file is
//! parsed (so an error never shows a secret), and positions in the file for error messages.

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Why a `${…}` could not be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unreplaced {
    /// The variable is not set (or empty).
    Unset(String),
    /// `${` without its closing `}`.
    Unterminated,
}

impl Unreplaced {
    pub(super) fn explain(&self) -> String {
        match self {
            Unreplaced::Unset(var) => format!(
                "environment variable {var} is not set (export it, or write the value in the file)"
            ),
            Unreplaced::Unterminated => {
                "`${` without its closing `}`: write ${VAR} (a literal `${` cannot be written)"
                    .into()
            }
        }
    }
}

/// A string value that held `${VAR}`s: its key path, the value as written (the template) and
/// as substituted. An error about the value names the key and the template, never the value,
/// which came from the environment and may be a secret put in the wrong key.
#[derive(Debug, Clone)]
pub(super) struct Substituted {
    pub path: String,
    pub template: String,
    pub value: String,
}

/// Replaces `${VAR}` in every string value, noting each substitution; a value that cannot be
/// replaced stays as written, and its key path and why go into `failed` (the caller says so
/// unless the file has a worse problem elsewhere, such as a misspelled key).
pub(super) fn substitute(
    v: &mut toml::Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
    done: &mut Vec<Substituted>,
    failed: &mut Vec<(String, Unreplaced)>,
) {
    match v {
        toml::Value::String(s) if s.contains("${") => match expand(s, env) {
            Ok(value) => done.push(Substituted {
                path,
                template: std::mem::replace(s, value.clone()),
                value,
            }),
            Err(why) => failed.push((path, why)),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, format!("{path}[{i}]"), env, done, failed);
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                substitute(item, p, env, done, failed);
            }
        }
        _ => {}
    }
}

pub(super) fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Unreplaced> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else {
            return Err(Unreplaced::Unterminated);
        };
        let name = &after[..j];
        match env(name) {
            Some(val) if !val.is_empty() => out.push_str(&val),
            _ => return Err(Unreplaced::Unset(name.to_string())),
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `problem` about the value at `key`, with every value substituted into that key (or a key
/// under it) written as its template instead: `${SO_URL}` rather than what the variable held.
pub(super) fn without_values(key: &str, problem: String, done: &[Substituted]) -> String {
    done.iter()
        .filter(|d| {
            d.path == key
                || key.starts_with(&format!("{}.", d.path))
                || d.path.starts_with(&format!("{key}."))
                || d.path.starts_with(&format!("{key}["))
        })
        .filter(|d| !d.value.is_empty())
        .fold(problem, |p, d| p.replace(&d.value, &d.template))
}
