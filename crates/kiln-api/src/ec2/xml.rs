//! Writing EC2's XML answers: `<{Action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">`
//! with the request id first, members under their model `locationName`s, list entries as
//! `<item>` elements.
//!
//! Element names are fixed strings of Kiln's; every text goes through [`escape`].

use std::borrow::Cow;

/// The namespace of the API version Kiln answers.
pub const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Escapes the text of an element (Kiln writes no attribute values but the fixed namespace, so
/// quotes stay as they are, as in EC2's own messages). Characters XML 1.0 cannot carry at all
/// (most C0 controls, lone surrogates cannot occur in a `str`, U+FFFE/U+FFFF) become U+FFFD, so
/// that a stored value can never make the whole answer unreadable.
pub fn escape(text: &str) -> Cow<'_, str> {
    let plain = |c: char| !matches!(c, '&' | '<' | '>' | '\r') && allowed(c);
    if text.chars().all(plain) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // A carriage return would be read back as a newline (XML normalises line ends).
            '\r' => out.push_str("&#13;"),
            c if allowed(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    Cow::Owned(out)
}

/// XML 1.0's `Char` production.
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// An answer being written.
pub struct Xml {
    out: String,
    root: String,
}

impl Xml {
    /// `<?xml ...?><{action}Response xmlns=...><requestId>...</requestId>`.
    pub fn response(action: &str, request_id: &str) -> Xml {
        let root = format!("{action}Response");
        let mut out = String::with_capacity(1024);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&format!("<{root} xmlns=\"{NAMESPACE}\">"));
        let mut xml = Xml { out, root };
        xml.text("requestId", request_id);
        xml
    }

    /// `<tag>text</tag>`.
    pub fn text(&mut self, tag: &str, text: &str) {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self.out.push_str(&escape(text));
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    /// `<tag>text</tag>` when there is a text.
    pub fn optional(&mut self, tag: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.text(tag, t);
        }
    }

    pub fn boolean(&mut self, tag: &str, value: bool) {
        self.text(tag, if value { "true" } else { "false" });
    }

    /// `<tag>...</tag>` around what `inner` writes.
    pub fn element(&mut self, tag: &str, inner: impl FnOnce(&mut Xml)) {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        inner(self);
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    /// `<tag><item>...</item>...</tag>`: one `item` per entry.
    pub fn list<T>(&mut self, tag: &str, entries: &[T], mut each: impl FnMut(&mut Xml, &T)) {
        self.element(tag, |x| {
            for entry in entries {
                x.element("item", |x| each(x, entry));
            }
        });
    }

    pub fn finish(mut self) -> String {
        self.out.push_str("</");
        self.out.push_str(&self.root);
        self.out.push('>');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("plain text"), "plain text");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a<b & c>\"d\" 'e'"), "a&lt;b &amp; c&gt;\"d\" 'e'");
        assert_eq!(escape("line\r\nnext\ttab"), "line&#13;\nnext\ttab");
        assert_eq!(escape("nul\u{0}bell\u{7}"), "nul\u{FFFD}bell\u{FFFD}");
        assert_eq!(escape("ünïcödé ☃ 𝄞"), "ünïcödé ☃ 𝄞");
        assert_eq!(escape("\u{FFFE}"), "\u{FFFD}");
    }

    #[test]
    fn answers_have_the_namespace_request_id_and_items() {
        let mut x = Xml::response("DescribeImages", "r-1");
        x.list("imagesSet", &["a<1", "b"], |x, name| x.text("name", name));
        x.optional("nextToken", None);
        x.boolean("flag", true);
        assert_eq!(
            x.finish(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeImagesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r-1</requestId><imagesSet><item><name>a&lt;1</name></item><item><name>b</name></item></imagesSet><flag>true</flag></DescribeImagesResponse>"
        );
    }
}
