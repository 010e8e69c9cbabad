//! CHAT_INFO transcripts read straight off quick-xml's event reader.
//!
//! The regular shape, `<chat><message><date/><from/><type/><text/></message>…</chat>`, is
//! turned into messages in one pass with no intermediate tree. Anything else (messages outside
//! `<chat>`, a field given twice, a field holding elements, names that differ only in case,
//! malformed XML) answers `None`, and the caller reads the transcript through the general
//! XML → JSON path instead, which defines the semantics; a differential test holds the two
//! to the same answers.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use quick_xml::Reader;
use quick_xml::events::Event;

use crate::lenient;
use crate::xml::push_reference;

/// One line of a session's chat transcript.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatMessage {
    pub sent_at: Option<DateTime<Utc>>,
    pub author: Option<String>,
    pub author_type: Option<String>,
    pub message: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Field {
    Date,
    From,
    Type,
    Text,
}

impl Field {
    fn of(name: &str) -> Option<Field> {
        [
            ("date", Field::Date),
            ("from", Field::From),
            ("type", Field::Type),
            ("text", Field::Text),
        ]
        .into_iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n))
        .map(|(_, f)| f)
    }
}

/// One `<message>` being read.
#[derive(Default)]
struct Open {
    /// Direct text, which is the message when it has no child elements.
    text: String,
    has_children: bool,
    seen: [bool; 4],
    message: ChatMessage,
}

/// The messages of a regular transcript, or `None` when it is not of the regular shape.
pub(super) fn fast(xml: &str, tz: Tz) -> Option<Vec<ChatMessage>> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut messages = Vec::with_capacity(8);
    // 0: outside <chat>, 1: in <chat>, 2: in <message>, 3: in a field (or a skipped element).
    let mut depth = 0usize;
    let mut chats = 0;
    let mut message_name: Option<String> = None;
    let mut open: Option<Open> = None;
    let mut field: Option<Field> = None;
    let mut buf = String::new();
    // Elements of no interest (inside <chat> or <message>) are skipped whole.
    let mut skipping = 0usize;
    loop {
        let ev = reader.read_event().ok()?;
        if skipping > 0 {
            match ev {
                Event::Start(_) => skipping += 1,
                Event::End(_) => skipping -= 1,
                Event::Eof => return None,
                _ => {}
            }
            continue;
        }
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let name = e.name();
            let name = name.as_ref();
            match depth {
                0 => {
                    chats += 1;
                    if chats > 1 || !name.eq_ignore_ascii_case("chat") {
                        return None;
                    }
                    if !empty {
                        depth = 1;
                    }
                }
                1 if name.eq_ignore_ascii_case("message") => {
                    match &message_name {
                        Some(n) if n != name => return None,
                        Some(_) => {}
                        None => message_name = Some(name.to_string()),
                    }
                    if empty {
                        messages.push(ChatMessage::default());
                    } else {
                        open = Some(Open::default());
                        depth = 2;
                    }
                }
                1 => {
                    if !empty {
                        skipping = 1;
                    }
                }
                2 => {
                    let m = open.as_mut()?;
                    m.has_children = true;
                    match Field::of(name) {
                        Some(f) => {
                            if std::mem::replace(&mut m.seen[f as usize], true) {
                                return None;
                            }
                            if !empty {
                                field = Some(f);
                                buf.clear();
                                depth = 3;
                            }
                        }
                        None if empty => {}
                        None => skipping = 1,
                    }
                }
                _ => return None,
            }
            continue;
        }
        match ev {
            Event::End(_) => match depth {
                3 => {
                    let m = open.as_mut()?;
                    if buf.contains('\0') {
                        buf.retain(|c| c != '\0');
                    }
                    // Most values start with a visible ASCII character: no need to trim them.
                    let blank = !buf.as_bytes().first().is_some_and(u8::is_ascii_graphic)
                        && buf.trim().is_empty();
                    // The date is read in place; the texts are moved out of the buffer.
                    let slot = match field.take()? {
                        Field::Date => {
                            if !blank {
                                m.message.sent_at = lenient::date_or_none(&buf, tz);
                            }
                            None
                        }
                        Field::From => Some(&mut m.message.author).filter(|_| !blank),
                        Field::Type => Some(&mut m.message.author_type).filter(|_| !blank),
                        Field::Text => Some(&mut m.message.message).filter(|_| !buf.is_empty()),
                    };
                    match slot {
                        Some(slot) => *slot = Some(std::mem::take(&mut buf)),
                        None => buf.clear(),
                    }
                    depth = 2;
                }
                2 => {
                    let m = open.take()?;
                    let mut message = m.message;
                    if !m.has_children {
                        message.message = lenient::text(&serde_json::Value::String(m.text));
                    }
                    messages.push(message);
                    depth = 1;
                }
                1 => depth = 0,
                _ => return None,
            },
            Event::Text(t) => push(&mut buf, &mut open, depth, &t.xml10_content()),
            Event::CData(c) => push(&mut buf, &mut open, depth, &c.xml10_content()),
            Event::GeneralRef(r) => match depth {
                3 => push_reference(&mut buf, &r),
                2 => push_reference(&mut open.as_mut()?.text, &r),
                _ => {}
            },
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Start(_) | Event::Empty(_) => unreachable!("handled above"),
        }
    }
    (depth == 0 && chats == 1).then_some(messages)
}

/// Text goes to the field being read, or to the message itself; elsewhere it is not kept.
fn push(buf: &mut String, open: &mut Option<Open>, depth: usize, text: &str) {
    match (depth, open) {
        (3, _) => buf.push_str(text),
        (2, Some(m)) => m.text.push_str(text),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::takecontrol::normalize::transcript_general;
    use proptest::prelude::*;

    const TZ: Tz = chrono_tz::Europe::Prague;

    fn same_as_general(xml: &str) -> bool {
        match fast(xml, TZ) {
            Some(messages) => {
                assert_eq!(Ok(messages), transcript_general(xml, TZ), "{xml}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn the_regular_shape_takes_the_fast_path_and_agrees() {
        let regular = [
            "<chat><message><date>2024-01-05 10:00:03</date><from>tech@acme.com</from><type>tech</type><text>Hello &amp; welcome</text></message>\
             <message><date>2024-01-05 10:00:40</date><from>John</from><type>customer</type><text><![CDATA[My <drive> is gone]]></text></message></chat>",
            "<?xml version=\"1.0\"?>\n<CHAT>\r\n <MESSAGE><DATE>2024-03-31 02:30:00</DATE><TEXT>a\r\nb &#x1F600; &nope;</TEXT></MESSAGE>\n</CHAT>\n",
            "<chat><message>just text</message><message/><message><text/><from> </from></message></chat>",
            "<chat><message><text>x\u{0}y</text><extra><deep>ignored</deep></extra></message><meta a=\"1\">ignored</meta></chat>",
            "<chat></chat>",
            "<chat/>",
            "<Chat>text only</Chat>",
        ];
        for xml in regular {
            assert!(same_as_general(xml), "not taken by the fast path: {xml}");
        }
    }

    #[test]
    fn other_shapes_fall_back() {
        let other = [
            "<message><text>outside chat</text></message>",
            "<chat><message><text>a</text><TEXT>b</TEXT></message></chat>",
            "<chat><message><text><b>bold</b></text></message></chat>",
            "<chat><message/><MESSAGE/></chat>",
            "<chat/><chat/>",
            "<chat><message><text>cut",
            "not xml",
        ];
        for xml in other {
            assert!(fast(xml, TZ).is_none(), "{xml}");
        }
    }

    fn field() -> impl Strategy<Value = String> {
        let name = prop::sample::select(vec![
            "date", "DATE", "from", "From", "type", "text", "TEXT", "extra",
        ]);
        let value = prop::sample::select(vec![
            "",
            "  ",
            "2024-01-05 10:00:03",
            "2024-10-27 02:30:00",
            "yesterday",
            "a &amp; b &lt;c&gt;",
            "<![CDATA[x <y> & z]]>",
            "x\u{0}y",
            "&#x1F600;&#38;",
            "&nope;",
            "\r\nline\r\n",
            "<b>nested</b>",
        ]);
        (name, value, any::<bool>()).prop_map(|(n, v, empty)| {
            if empty {
                format!("<{n}/>")
            } else {
                format!("<{n}>{v}</{n}>")
            }
        })
    }

    fn message() -> impl Strategy<Value = String> {
        let name = prop::sample::select(vec!["message", "message", "message", "Message"]);
        let body = prop_oneof![
            Just(String::new()),
            Just("plain &amp; text".to_string()),
            prop::collection::vec(field(), 0..6).prop_map(|f| f.join(" ")),
        ];
        (name, body).prop_map(|(n, b)| format!("<{n}>{b}</{n}>"))
    }

    fn transcript() -> impl Strategy<Value = String> {
        let wrapper = prop::sample::select(vec!["chat", "CHAT", "Chat", ""]);
        (
            wrapper,
            prop::collection::vec(message(), 0..5),
            any::<bool>(),
            0usize..400,
        )
            .prop_map(|(w, m, cut, at)| {
                let inner = m.join("\n");
                let xml = if w.is_empty() {
                    inner
                } else {
                    format!("<{w}>{inner}</{w}>")
                };
                if cut && at < xml.len() && xml.is_char_boundary(at) {
                    xml[..at].to_string()
                } else {
                    xml
                }
            })
    }

    proptest! {
        #[test]
        fn the_fast_path_agrees_with_the_general_one(xml in transcript()) {
            same_as_general(&xml);
        }
    }
}
