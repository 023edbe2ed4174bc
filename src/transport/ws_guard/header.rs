//! An incremental reader of RFC 6455 frame headers (§5.2): FIN, opcode,
//! the 7-, 16- or 64-bit payload length and the masking key, fed as bytes
//! arrive, so a header split across reads is understood the moment its
//! last byte comes in.

/// The longest header: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Opcodes 8 and above are control frames (close, ping, pong, reserved).
const FIRST_CONTROL_OPCODE: u8 = 0x8;

/// What one frame header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The frame is the last of its message.
    pub fin: bool,
    /// The 4-bit opcode (0 continuation, 1 text, 2 binary, 8+ control).
    pub opcode: u8,
    /// The declared payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    pub fn is_control(&self) -> bool {
        self.opcode >= FIRST_CONTROL_OPCODE
    }

    pub fn is_continuation(&self) -> bool {
        self.opcode == 0
    }
}

/// Collects the bytes of one header; [`HeaderReader::feed`] says when the
/// header is whole.
#[derive(Debug, Default)]
pub struct HeaderReader {
    bytes: [u8; MAX_HEADER_LEN],
    have: usize,
}

impl HeaderReader {
    /// The header's full length, once its first two bytes are known.
    fn header_len(&self) -> Option<usize> {
        if self.have < 2 {
            return None;
        }
        let second = self.bytes[1];
        let extended = match second & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        Some(2 + extended + mask)
    }

    /// Consumes header bytes from the front of `input`. Returns how many it
    /// took, and the header once its last byte has arrived; the reader is
    /// then ready for the next frame.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<FrameHeader>) {
        let mut taken = 0;
        loop {
            let needed = self.header_len().unwrap_or(2);
            if self.have == needed {
                let header = self.decode();
                self.have = 0;
                return (taken, Some(header));
            }
            let Some(&byte) = input.get(taken) else {
                return (taken, None);
            };
            self.bytes[self.have] = byte;
            self.have += 1;
            taken += 1;
        }
    }

    fn decode(&self) -> FrameHeader {
        let first = self.bytes[0];
        let short = self.bytes[1] & 0x7F;
        let payload_len = match short {
            126 => u64::from(u16::from_be_bytes([self.bytes[2], self.bytes[3]])),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&self.bytes[2..10]);
                // RFC 6455: the most significant bit must be 0. Read as
                // "larger than anything" so the size check refuses it.
                u64::from_be_bytes(be).min(u64::MAX >> 1)
            }
            n => u64::from(n),
        };
        FrameHeader {
            fin: first & 0x80 != 0,
            opcode: first & 0x0F,
            payload_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> (usize, Option<FrameHeader>) {
        HeaderReader::default().feed(bytes)
    }

    #[test]
    fn reads_the_three_length_forms() {
        // Masked text frame, 7-bit length 5.
        let (n, h) = read_all(&[0x81, 0x85, 1, 2, 3, 4, b'h']);
        assert_eq!(n, 6);
        assert_eq!(
            h,
            Some(FrameHeader {
                fin: true,
                opcode: 1,
                payload_len: 5
            })
        );
        // 16-bit length.
        let (n, h) = read_all(&[0x02, 0xFE, 0x01, 0x00, 1, 2, 3, 4]);
        assert_eq!(n, 8);
        let h = h.expect("header");
        assert_eq!((h.fin, h.opcode, h.payload_len), (false, 2, 256));
        // 64-bit length: 2^40.
        let mut bytes = vec![0x81, 0xFF, 0, 0, 0x01, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[9, 9, 9, 9]);
        let (n, h) = read_all(&bytes);
        assert_eq!(n, 14);
        assert_eq!(h.expect("header").payload_len, 1 << 40);
    }

    #[test]
    fn a_header_split_byte_by_byte_is_read_when_its_last_byte_arrives() {
        let bytes = [0x80, 0xFF, 0, 0, 0, 0, 0, 0, 0x10, 0, 1, 2, 3, 4];
        let mut reader = HeaderReader::default();
        for (i, byte) in bytes.iter().enumerate() {
            let (n, h) = reader.feed(std::slice::from_ref(byte));
            assert_eq!(n, 1);
            assert_eq!(h.is_some(), i == bytes.len() - 1, "byte {i}");
        }
        // The reader starts over for the next frame.
        let (n, h) = reader.feed(&[0x89, 0x80, 0, 0, 0, 0]);
        assert_eq!(n, 6);
        let h = h.expect("ping header");
        assert!(h.is_control() && h.fin && h.payload_len == 0);
    }

    #[test]
    fn stops_at_the_end_of_the_header() {
        let (n, h) = read_all(&[0x00, 0x83, 1, 2, 3, 4, b'a', b'b', b'c']);
        assert_eq!(n, 6);
        let h = h.expect("header");
        assert!(h.is_continuation() && !h.fin);
    }

    #[test]
    fn an_unmasked_header_has_no_key() {
        let (n, h) = read_all(&[0x81, 0x03, b'a']);
        assert_eq!(n, 2);
        assert_eq!(h.expect("header").payload_len, 3);
    }
}
