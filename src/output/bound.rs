//! Keeping a stream's output bounded: its head and its tail, and how much was left out between.

/// Bytes kept from the start of a step's stdout (and, separately, its stderr).
pub const HEAD: usize = 64 * 1024;
/// Bytes kept from the end of a step's stdout (and, separately, its stderr).
pub const TAIL: usize = 64 * 1024;

/// Where output was cut and how much was left out there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// The kept bytes before this offset are the head, the rest the tail.
    pub at: usize,
    pub bytes: u64,
}

impl Dropped {
    /// `… 299.9 MB dropped …`
    pub fn note(&self) -> String {
        format!("… {} dropped …", human_bytes(self.bytes))
    }
}

/// `123 bytes`, `45.6 kB`, `299.9 MB`, `1.2 GB` (powers of 1000, as `ls -h --si` and disks).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 1000 {
        format!("{bytes} bytes")
    } else if b < 1e6 {
        format!("{:.1} kB", b / 1e3)
    } else if b < 1e9 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} GB", b / 1e9)
    }
}

/// The first `HEAD` and last `TAIL` bytes of a stream, whatever its length.
#[derive(Debug, Default)]
pub struct HeadTail {
    head: Vec<u8>,
    /// Holds up to `2 * TAIL` bytes so that it is compacted only now and then.
    tail: Vec<u8>,
    dropped: u64,
}

impl HeadTail {
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.head.len() < HEAD {
            let room = (HEAD - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..room]);
            bytes = &bytes[room..];
        }
        if bytes.len() >= TAIL {
            self.dropped += (self.tail.len() + bytes.len() - TAIL) as u64;
            self.tail.clear();
            self.tail.extend_from_slice(&bytes[bytes.len() - TAIL..]);
            return;
        }
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * TAIL {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let excess = self.tail.len().saturating_sub(TAIL);
        self.dropped += excess as u64;
        self.tail.drain(..excess);
    }

    /// The kept bytes, and where and how much was dropped (cut on UTF-8 character boundaries).
    pub fn finish(mut self) -> (Vec<u8>, Option<Dropped>) {
        if self.dropped == 0 {
            self.head.append(&mut self.tail);
            return (self.head, None);
        }
        self.compact();
        let head_end = char_start_at_end(&self.head);
        let tail_start = self
            .tail
            .iter()
            .take(3)
            .take_while(|b| is_continuation(**b))
            .count();
        self.dropped += (self.head.len() - head_end + tail_start) as u64;
        self.head.truncate(head_end);
        let at = self.head.len();
        self.head.extend_from_slice(&self.tail[tail_start..]);
        (
            self.head,
            Some(Dropped {
                at,
                bytes: self.dropped,
            }),
        )
    }
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// The length of `bytes` without a UTF-8 sequence cut off at its end.
fn char_start_at_end(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(4) {
        let byte = bytes[len - back];
        if is_continuation(byte) {
            continue;
        }
        let needs = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if needs > back { len - back } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(pieces: &[&[u8]]) -> (Vec<u8>, Option<Dropped>) {
        let mut ht = HeadTail::default();
        for p in pieces {
            ht.push(p);
        }
        ht.finish()
    }

    #[test]
    fn short_output_is_kept_whole() {
        let text = vec![b'a'; HEAD + TAIL];
        assert_eq!(kept(&[&text[..10], &text[10..]]), (text.clone(), None));
    }

    #[test]
    fn long_output_keeps_head_and_tail_and_counts_the_rest() {
        let total = 10 * 1024 * 1024usize;
        let text: Vec<u8> = (0..total).map(|i| b'a' + (i % 26) as u8).collect();
        for piece in [1000, 4096, 32 * 1024, 200 * 1024] {
            let pieces: Vec<&[u8]> = text.chunks(piece).collect();
            let (bytes, dropped) = kept(&pieces);
            let dropped = dropped.unwrap();
            assert_eq!(dropped.at, HEAD);
            assert_eq!(dropped.bytes as usize, total - HEAD - TAIL);
            assert_eq!(&bytes[..HEAD], &text[..HEAD]);
            assert_eq!(&bytes[HEAD..], &text[total - TAIL..]);
        }
        assert_eq!(
            Dropped {
                at: 0,
                bytes: 299_868_928
            }
            .note(),
            "… 299.9 MB dropped …"
        );
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(1500), "1.5 kB");
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = "é".repeat(HEAD + TAIL);
        let (bytes, dropped) = kept(&[text.as_bytes()]);
        let text = String::from_utf8(bytes).expect("whole characters only");
        let dropped = dropped.unwrap();
        assert!(text.is_char_boundary(dropped.at));
        assert_eq!(text.len() as u64 + dropped.bytes, 2 * (HEAD + TAIL) as u64);
    }
}
