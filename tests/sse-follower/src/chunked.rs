//! HTTP/1.1 chunked transfer coding, decoded as bytes arrive: a streamed
//! response's body comes as `SIZE\r\n DATA \r\n` pieces that the reads cut
//! anywhere, so the decoder keeps where it is between reads.

/// Where the decoder is in the chunk sequence.
#[derive(Debug, PartialEq, Eq)]
enum At {
    /// Reading a chunk-size line (its bytes so far are in `Chunked::line`).
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(usize),
    /// After a chunk's data, this many bytes of its CRLF left.
    DataEnd(u8),
    /// The last (zero-size) chunk was read.
    End,
}

/// A chunked body's decoder.
#[derive(Debug)]
pub struct Chunked {
    at: At,
    line: Vec<u8>,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            at: At::Size,
            line: Vec::new(),
        }
    }
}

impl Chunked {
    /// Decodes `input`, appending the body's bytes to `out`; `Ok(true)` once
    /// the last chunk has been read.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        while !input.is_empty() {
            match self.at {
                At::Size => match input.iter().position(|&b| b == b'\n') {
                    None => {
                        self.line.extend_from_slice(input);
                        input = &[];
                    }
                    Some(end) => {
                        self.line.extend_from_slice(&input[..end]);
                        input = &input[end + 1..];
                        let size = chunk_size(&self.line)?;
                        self.line.clear();
                        self.at = match size {
                            0 => At::End,
                            n => At::Data(n),
                        };
                    }
                },
                At::Data(left) => {
                    let take = left.min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.at = match left - take {
                        0 => At::DataEnd(2),
                        n => At::Data(n),
                    };
                }
                At::DataEnd(left) => {
                    let expected = &b"\r\n"[2 - left as usize..];
                    if input[0] != expected[0] {
                        return Err(format!(
                            "a chunk's data is not followed by CRLF (got byte {:#04x})",
                            input[0]
                        ));
                    }
                    input = &input[1..];
                    self.at = match left - 1 {
                        0 => At::Size,
                        n => At::DataEnd(n),
                    };
                }
                // Trailers after the last chunk are not read.
                At::End => return Ok(true),
            }
        }
        Ok(self.at == At::End)
    }
}

/// The size on a chunk-size line (hex, optional `;extensions`, CR).
fn chunk_size(line: &[u8]) -> Result<usize, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| usize::from_str_radix(d.trim(), 16).ok())
        .ok_or_else(|| format!("not a chunk-size line: {:?}", String::from_utf8_lossy(line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"5\r\nhello\r\n1b;ext=1\r\n, world, in a longer chunk!\r\n0\r\n\r\n";

    #[test]
    fn a_body_cut_at_every_byte_decodes_the_same() {
        for cut in 0..=BODY.len() {
            let (mut decoder, mut out) = (Chunked::default(), Vec::new());
            let first = decoder.feed(&BODY[..cut], &mut out).unwrap();
            let ended = decoder.feed(&BODY[cut..], &mut out).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "hello, world, in a longer chunk!",
                "cut at {cut}"
            );
            assert!(ended || first, "cut at {cut}: the last chunk was not seen");
        }
    }

    #[test]
    fn a_body_fed_one_byte_at_a_time_decodes_the_same() {
        let (mut decoder, mut out) = (Chunked::default(), Vec::new());
        for byte in BODY {
            decoder.feed(std::slice::from_ref(byte), &mut out).unwrap();
        }
        assert_eq!(out, b"hello, world, in a longer chunk!");
    }

    #[test]
    fn bad_framing_is_an_error() {
        let mut out = Vec::new();
        let err = Chunked::default().feed(b"zz\r\n", &mut out).unwrap_err();
        assert!(err.contains("not a chunk-size line"), "{err}");
        let err = Chunked::default()
            .feed(b"2\r\nabX\r\n", &mut out)
            .unwrap_err();
        assert!(err.contains("not followed by CRLF"), "{err}");
    }
}
