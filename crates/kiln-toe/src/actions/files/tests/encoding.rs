//! Text encodings and SetFileEncoding.

use super::*;

#[test]
fn encodings_parse_and_round_trip() {
    let names: &[(&str, Encoding)] = &[
        ("utf8", Encoding::Utf8),
        ("UTF-8", Encoding::Utf8),
        ("utf16", Encoding::Utf16Le),
        ("UTF-16", Encoding::Utf16Le),
        ("utf16-LE", Encoding::Utf16Le),
        ("utf-16-le", Encoding::Utf16Le),
        ("utf16-BE", Encoding::Utf16Be),
        ("Utf-16-Be", Encoding::Utf16Be),
        ("utf32", Encoding::Utf32Le),
        ("utf-32", Encoding::Utf32Le),
        ("utf32-LE", Encoding::Utf32Le),
        ("utf-32-LE", Encoding::Utf32Le),
        ("utf32-BE", Encoding::Utf32Be),
        ("UTF-32-BE", Encoding::Utf32Be),
    ];
    for (name, want) in names {
        assert_eq!(
            Encoding::parse(Some(&Text(name.to_string()))),
            Ok(*want),
            "{name}"
        );
    }
    assert_eq!(Encoding::parse(None), Ok(Encoding::Utf8));
    let err = Encoding::parse(Some(&Text("latin1".into()))).unwrap_err();
    assert!(
        err.starts_with("encoding must be one of") && err.ends_with("not `latin1`"),
        "{err}"
    );

    let text = "héllo 𝄞 wörld\n";
    for enc in Encoding::ALL {
        let bytes = enc.encode(text);
        assert_eq!(enc.decode(&bytes).as_deref(), Some(text), "{enc:?}");
        let mut with_bom = enc.bom().to_vec();
        with_bom.extend(&bytes);
        assert_eq!(enc.decode(&with_bom).as_deref(), Some(text), "{enc:?} bom");
        assert_eq!(Encoding::sniff(&with_bom), Some(enc), "{enc:?} sniff");
    }
    assert_eq!(Encoding::Utf16Le.encode("A"), vec![0x41, 0]);
    assert_eq!(Encoding::Utf16Be.encode("A"), vec![0, 0x41]);
    assert_eq!(Encoding::Utf32Le.encode("A"), vec![0x41, 0, 0, 0]);
    assert_eq!(Encoding::Utf32Be.encode("A"), vec![0, 0, 0, 0x41]);
    assert_eq!(Encoding::Utf16Le.decode(&[0x41]), None);
    assert_eq!(Encoding::Utf32Le.decode(&[0, 0xD8, 0, 0]), None);
    assert_eq!(Encoding::Utf8.decode(&[0xFF]), None);
}

#[test]
fn set_file_encoding_round_trips() {
    let f = Fixture::new();
    let text = "Grüße, 世界 𝄞\n";
    for name in [
        "utf8",
        "utf16",
        "utf-16-BE",
        "UTF32",
        "utf32-be",
        "utf-16-le",
        "utf-32-LE",
    ] {
        f.write("t.txt", text);
        f.ok(
            SetFileEncoding,
            &format!("- {{path: /t.txt, encoding: {name}}}"),
        );
        let enc = Encoding::parse(Some(&Text(name.into()))).unwrap();
        let mut want = if enc == Encoding::Utf8 {
            Vec::new()
        } else {
            enc.bom().to_vec()
        };
        want.extend(enc.encode(text));
        assert_eq!(fs::read(f.p("t.txt")).unwrap(), want, "{name}");
        assert_eq!(
            f.out(
                ReadFile,
                &format!("- {{path: /t.txt, encoding: {name}}}"),
                "content"
            ),
            text,
            "{name}"
        );
        // And back to UTF-8: the byte order mark says where from.
        f.ok(SetFileEncoding, "- path: /t.txt");
        assert_eq!(f.read("t.txt"), text, "{name} back");
    }
    fs::set_permissions(f.p("t.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    f.ok(SetFileEncoding, "- {path: /t.txt, encoding: utf16}");
    assert_eq!(f.mode("t.txt"), 0o600, "the mode is kept");
    assert_eq!(
        f.fails(SetFileEncoding, "- path: /none"),
        "inputs[0]: /none: no such file"
    );
    fs::write(f.p("bin"), [0xC3]).unwrap();
    assert_eq!(
        f.fails(SetFileEncoding, "- {path: /bin, encoding: utf16}"),
        "inputs[0]: /bin: the file is not valid UTF-8 text"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    #[test]
    fn any_text_round_trips_through_every_encoding(text in "\\PC*") {
        for enc in Encoding::ALL {
            proptest::prop_assert_eq!(enc.decode(&enc.encode(&text)), Some(text.clone()));
        }
    }
}
