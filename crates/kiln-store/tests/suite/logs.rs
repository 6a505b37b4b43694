//! Build logs kept in the database for the API servers of other machines: chunks appended at
//! their offsets, read back from any byte, closed, and forgotten with their image.

use crate::Fixture;

pub fn build_logs_are_read_from_any_offset_and_deleted(fixture: &Fixture) {
    let store = fixture.open();
    let read = |id: &str, offset: u64, max: usize| {
        store
            .read(|tx| tx.read_build_log(id, offset, max))
            .unwrap()
            .unwrap()
    };
    let none = read("b1", 0, 100);
    assert!(none.data.is_empty() && none.size == 0 && !none.complete);

    // Any bytes: NUL and invalid UTF-8 included.
    let chunks: [&[u8]; 3] = [b"first line\n", b"\0\xff\xfe binary\n", b"third\n"];
    let mut offset = 0u64;
    for chunk in chunks {
        store
            .write(|tx| tx.append_build_log("b1", offset, chunk, false))
            .unwrap()
            .unwrap();
        offset += chunk.len() as u64;
    }
    store
        .write(|tx| tx.append_build_log("b2", 0, b"other build\n", false))
        .unwrap()
        .unwrap();
    let whole: Vec<u8> = chunks.concat();
    let all = read("b1", 0, 1 << 20);
    assert_eq!(all.data, whole);
    assert_eq!(all.size, whole.len() as u64);
    assert!(!all.complete);
    for start in 0..whole.len() {
        for max in [1, 5, 13, 1 << 20] {
            let part = read("b1", start as u64, max);
            let end = (start + max).min(whole.len());
            assert_eq!(part.data, whole[start..end], "from {start}, at most {max}");
        }
    }
    assert!(read("b1", whole.len() as u64 + 10, 10).data.is_empty());

    // Closing may carry the last bytes, or none.
    store
        .write(|tx| tx.append_build_log("b1", offset, b"end\n", true))
        .unwrap()
        .unwrap();
    let closed = read("b1", offset, 100);
    assert_eq!(closed.data, b"end\n");
    assert!(closed.complete);
    store
        .write(|tx| tx.append_build_log("b2", 12, b"", true))
        .unwrap()
        .unwrap();
    let other = read("b2", 0, 100);
    assert_eq!(
        (other.data.as_slice(), other.size, other.complete),
        (&b"other build\n"[..], 12, true)
    );

    assert_eq!(
        store
            .write(|tx| tx.delete_build_log("b1"))
            .unwrap()
            .unwrap(),
        4
    );
    let gone = read("b1", 0, 100);
    assert!(gone.data.is_empty() && gone.size == 0 && !gone.complete);
    assert_eq!(read("b2", 0, 100).size, 12, "another build's log stays");
}
