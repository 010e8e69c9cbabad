//! Small, bounded XML helpers on quick-xml's event reader.
//!
//! Safety: quick-xml never expands entities declared in a DTD, so entity bombs cannot grow;
//! an unknown entity reference is kept as written (`&name;`). Nesting depth is bounded.

use quick_xml::Reader;
use quick_xml::events::Event;

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 64;

/// An element: its name, its text (entities resolved, CDATA included) and child elements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child whose name matches case-insensitively.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

/// Resolves one entity reference (`amp`, `#38`, `#x26` ...); unknown names stay as written.
pub fn push_reference(out: &mut String, r: &quick_xml::events::BytesRef<'_>) {
    if r.is_char_ref() {
        if let Ok(Some(c)) = r.resolve_char_ref() {
            out.push(c);
            return;
        }
    } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(r) {
        out.push_str(s);
        return;
    }
    out.push('&');
    out.push_str(r);
    out.push(';');
}

/// Parses a whole document or fragment into a synthetic root whose children are the top-level
/// elements (and whose text is any top-level text).
pub fn parse(xml: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("{e} at byte {}", reader.error_position()))?;
        match ev {
            Event::Start(s) => {
                if stack.len() > MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH} levels"));
                }
                stack.push(Element {
                    name: s.name().as_ref().to_string(),
                    ..Default::default()
                });
            }
            Event::Empty(s) => {
                let el = Element {
                    name: s.name().as_ref().to_string(),
                    ..Default::default()
                };
                stack.last_mut().expect("root").children.push(el);
            }
            Event::End(_) => {
                let el = stack.pop().expect("balanced");
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Err("unbalanced end tag".into()),
                }
            }
            Event::Text(t) => stack
                .last_mut()
                .expect("root")
                .text
                .push_str(&t.xml10_content()),
            Event::CData(c) => stack
                .last_mut()
                .expect("root")
                .text
                .push_str(&c.xml10_content()),
            Event::GeneralRef(r) => push_reference(&mut stack.last_mut().expect("root").text, &r),
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if stack.len() != 1 {
        return Err(format!(
            "document ended inside <{}>",
            stack.last().map_or("", |e| e.name.as_str())
        ));
    }
    Ok(stack.pop().expect("root"))
}

/// The text of a fragment (entities resolved, CDATA included), or the fragment unchanged when
/// it holds elements (e.g. a nested `<chat>` kept as XML for its own parser).
pub fn fragment_value(inner: &str) -> Result<String, String> {
    if !inner.contains('<') && !inner.contains('&') {
        return Ok(inner.to_string());
    }
    let root = parse(inner)?;
    if root.children.is_empty() {
        Ok(root.text)
    } else {
        Ok(inner.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_cdata_and_unknown_refs() {
        let root = parse("<a>x &amp; &#x263A; &lt;b&gt; &nope; <![CDATA[<raw> & ]]></a>").unwrap();
        assert_eq!(root.children[0].text, "x & ☺ <b> &nope; <raw> & ");
    }

    #[test]
    fn bombs_do_not_expand() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        let root = parse(bomb).unwrap();
        assert_eq!(root.children[0].text, "&lol2;");
    }

    #[test]
    fn malformed_is_an_error() {
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a>").is_err());
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn fragments() {
        assert_eq!(fragment_value("plain").unwrap(), "plain");
        assert_eq!(fragment_value("a &amp; b").unwrap(), "a & b");
        assert_eq!(
            fragment_value("<chat><message/></chat>").unwrap(),
            "<chat><message/></chat>"
        );
    }
}
