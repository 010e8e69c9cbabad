//! `${VAR}` in the config's string values, replaced from the environment after the file is
//! parsed (so an error never shows a secret), and positions in the file for error messages.

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Replaces `${VAR}` in every string value; on an unset variable returns `(key path, VAR)`.
pub(super) fn substitute(
    v: &mut toml::Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match v {
        toml::Value::String(s) if s.contains("${") => {
            *s = expand(s, env).map_err(|var| (path, var))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, format!("{path}[{i}]"), env)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                substitute(item, p, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

pub(super) fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                let name = &after[..j];
                match env(name) {
                    Some(val) if !val.is_empty() => out.push_str(&val),
                    _ => return Err(name.to_string()),
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}
