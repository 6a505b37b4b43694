//! Text encodings (UTF-8, UTF-16 and UTF-32 in either byte order) that AppendFile, CreateFile and
//! ReadFile read and write, and the SetFileEncoding action that converts a file between them.

use crate::actions::inputs::Text;
use crate::actions::ActionContext;
use serde::Deserialize;
use std::fs;
use std::io;

use super::paths::{io_err, resolve};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Utf8,
    Utf16Le,
    Utf16Be,
    Utf32Le,
    Utf32Be,
}

impl Encoding {
    #[cfg(test)]
    pub(super) const ALL: [Encoding; 5] = [
        Encoding::Utf8,
        Encoding::Utf16Le,
        Encoding::Utf16Be,
        Encoding::Utf32Le,
        Encoding::Utf32Be,
    ];

    /// `utf8` when absent or empty; names are case-insensitive, UTF-16/32 without an endianness
    /// are little-endian (as the docs say).
    pub(super) fn parse(value: Option<&Text>) -> Result<Encoding, String> {
        let Some(text) = value else {
            return Ok(Encoding::Utf8);
        };
        match text.as_str().trim().to_ascii_lowercase().as_str() {
            "" | "utf8" | "utf-8" => Ok(Encoding::Utf8),
            "utf16" | "utf-16" | "utf16-le" | "utf-16-le" => Ok(Encoding::Utf16Le),
            "utf16-be" | "utf-16-be" => Ok(Encoding::Utf16Be),
            "utf32" | "utf-32" | "utf32-le" | "utf-32-le" => Ok(Encoding::Utf32Le),
            "utf32-be" | "utf-32-be" => Ok(Encoding::Utf32Be),
            _ => Err(format!(
                "encoding must be one of utf8, utf16, utf16-LE, utf16-BE, utf32, utf32-LE, \
                 utf32-BE (or with a dash after utf), not `{}`",
                text.as_str()
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf16Le => "UTF-16LE",
            Encoding::Utf16Be => "UTF-16BE",
            Encoding::Utf32Le => "UTF-32LE",
            Encoding::Utf32Be => "UTF-32BE",
        }
    }

    pub(super) fn bom(self) -> &'static [u8] {
        match self {
            Encoding::Utf8 => &[0xEF, 0xBB, 0xBF],
            Encoding::Utf16Le => &[0xFF, 0xFE],
            Encoding::Utf16Be => &[0xFE, 0xFF],
            Encoding::Utf32Le => &[0xFF, 0xFE, 0x00, 0x00],
            Encoding::Utf32Be => &[0x00, 0x00, 0xFE, 0xFF],
        }
    }

    pub(super) fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Encoding::Utf8 => text.as_bytes().to_vec(),
            Encoding::Utf16Le => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            Encoding::Utf16Be => text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
            Encoding::Utf32Le => text
                .chars()
                .flat_map(|c| (c as u32).to_le_bytes())
                .collect(),
            Encoding::Utf32Be => text
                .chars()
                .flat_map(|c| (c as u32).to_be_bytes())
                .collect(),
        }
    }

    /// Decodes `bytes`, dropping a leading byte order mark of this encoding.
    pub(super) fn decode(self, bytes: &[u8]) -> Option<String> {
        let bytes = bytes.strip_prefix(self.bom()).unwrap_or(bytes);
        match self {
            Encoding::Utf8 => String::from_utf8(bytes.to_vec()).ok(),
            Encoding::Utf16Le | Encoding::Utf16Be => {
                if !bytes.len().is_multiple_of(2) {
                    return None;
                }
                let units = bytes.chunks_exact(2).map(|c| {
                    let pair = [c[0], c[1]];
                    if self == Encoding::Utf16Le {
                        u16::from_le_bytes(pair)
                    } else {
                        u16::from_be_bytes(pair)
                    }
                });
                char::decode_utf16(units)
                    .collect::<Result<String, _>>()
                    .ok()
            }
            Encoding::Utf32Le | Encoding::Utf32Be => {
                if !bytes.len().is_multiple_of(4) {
                    return None;
                }
                bytes
                    .chunks_exact(4)
                    .map(|c| {
                        let quad = [c[0], c[1], c[2], c[3]];
                        let n = if self == Encoding::Utf32Le {
                            u32::from_le_bytes(quad)
                        } else {
                            u32::from_be_bytes(quad)
                        };
                        char::from_u32(n)
                    })
                    .collect()
            }
        }
    }

    /// The encoding a file's byte order mark names; UTF-32 marks are checked before UTF-16
    /// ones (`FF FE 00 00` starts with `FF FE`).
    pub(super) fn sniff(bytes: &[u8]) -> Option<Encoding> {
        [
            Encoding::Utf32Le,
            Encoding::Utf32Be,
            Encoding::Utf8,
            Encoding::Utf16Le,
            Encoding::Utf16Be,
        ]
        .into_iter()
        .find(|e| bytes.starts_with(e.bom()))
    }
}

pub(super) fn decode_file(doc: &str, bytes: &[u8], encoding: Encoding) -> Result<String, String> {
    encoding
        .decode(bytes)
        .ok_or_else(|| format!("{doc}: the file is not valid {} text", encoding.name()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct EncodingEntry {
    path: Text,
    encoding: Option<Text>,
}

/// SetFileEncoding: re-encodes the file's text.
/// Decisions: the current encoding is the one a byte order mark names, else UTF-8 (the docs
/// speak of converting from UTF-8). UTF-16 and UTF-32 results start with a byte order mark, so
/// the file says its own encoding and a later SetFileEncoding can convert it back; UTF-8 is
/// written without one. Mode and owner are kept (the file is rewritten in place).
pub(super) fn set_file_encoding(ctx: &ActionContext, e: &EncodingEntry) -> Result<(), String> {
    let doc = e.path.as_str();
    let encoding = Encoding::parse(e.encoding.as_ref())?;
    let host = resolve(ctx, doc)?;
    match fs::metadata(&host) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(format!("{doc}: no such file"))
        }
        Err(err) => return Err(io_err(doc)(err)),
        Ok(m) if m.is_dir() => return Err(format!("{doc}: is a folder, not a file")),
        Ok(_) => {}
    }
    let bytes = fs::read(&host).map_err(io_err(doc))?;
    let current = Encoding::sniff(&bytes).unwrap_or(Encoding::Utf8);
    let text = decode_file(doc, &bytes, current)?;
    let mut out = Vec::new();
    if encoding != Encoding::Utf8 {
        out.extend_from_slice(encoding.bom());
    }
    out.extend(encoding.encode(&text));
    fs::write(&host, out).map_err(io_err(doc))
}
