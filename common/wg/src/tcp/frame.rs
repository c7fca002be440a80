//! The framing on the wire: each datagram as a 2-byte big-endian length, then the datagram
//! (mullvad's udp-over-tcp framing, so its `udp2tcp` can be a stock laptop's relay too).
//! Pure and bounded: a [`Deframer`] never holds more than one frame and one read.

/// The longest datagram a frame can carry (its length is 16 bits).
pub const MAX_DATAGRAM: usize = u16::MAX as usize;

/// A datagram longer than [`MAX_DATAGRAM`]: it cannot be framed (WireGuard never sends one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {0}-byte datagram does not fit a frame (at most {MAX_DATAGRAM})")]
pub struct TooLong(pub usize);

/// Appends the frame of `datagram` to `out`.
pub fn encode(datagram: &[u8], out: &mut Vec<u8>) -> Result<(), TooLong> {
    let length = u16::try_from(datagram.len()).map_err(|_| TooLong(datagram.len()))?;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(datagram);
    Ok(())
}

/// Whether `datagram` has the shape of a WireGuard message: type 1-4, three zero bytes, and
/// the size of its type (initiation 148, response 92, cookie reply 64, data at least 32: the
/// padding stops at the MTU, so not always a multiple of 16). Anything else on a connection
/// is junk, and the connection is closed for it.
pub fn is_wireguard(datagram: &[u8]) -> bool {
    let Some((kind, rest)) = datagram.split_first() else {
        return false;
    };
    if rest.len() < 3 || rest[..3] != [0, 0, 0] {
        return false;
    }
    match kind {
        1 => datagram.len() == 148,
        2 => datagram.len() == 92,
        3 => datagram.len() == 64,
        4 => datagram.len() >= 32,
        _ => false,
    }
}

/// Splits a byte stream back into datagrams.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`; what lies before it is consumed.
    start: usize,
}

impl Deframer {
    /// Bytes read from the stream, in order.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole datagram, if the stream has delivered one.
    pub fn next_datagram(&mut self) -> Option<&[u8]> {
        let pending = &self.buf[self.start..];
        let header: [u8; 2] = pending.get(..2)?.try_into().ok()?;
        let end = 2 + usize::from(u16::from_be_bytes(header));
        if pending.len() < end {
            return None;
        }
        let frame = self.start + 2..self.start + end;
        self.start += end;
        Some(&self.buf[frame])
    }

    /// Bytes of a frame not yet complete.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wireguard_shapes() {
        let message = |kind: u8, len: usize| {
            let mut m = vec![0u8; len];
            m[0] = kind;
            m
        };
        for (kind, len, ok) in [
            (1, 148, true),
            (1, 149, false),
            (2, 92, true),
            (3, 64, true),
            (4, 32, true),
            (4, 48, true),
            (4, 1452, true),
            (4, 40, true),
            (4, 16, false),
            (5, 148, false),
            (0, 32, false),
        ] {
            assert_eq!(
                is_wireguard(&message(kind, len)),
                ok,
                "type {kind}, {len} bytes"
            );
        }
        let mut reserved = message(1, 148);
        reserved[2] = 1;
        assert!(!is_wireguard(&reserved), "reserved bytes must be zero");
        assert!(!is_wireguard(&[]));
        assert!(!is_wireguard(b"GET / HTTP/1.1\r\n"));
    }

    #[test]
    fn the_longest_datagram_fits_and_one_more_byte_does_not() {
        let mut out = Vec::new();
        assert_eq!(encode(&vec![7; MAX_DATAGRAM], &mut out), Ok(()));
        assert_eq!(out.len(), MAX_DATAGRAM + 2);
        assert_eq!(
            encode(&vec![7; MAX_DATAGRAM + 1], &mut Vec::new()),
            Err(TooLong(MAX_DATAGRAM + 1))
        );
    }

    proptest! {
        /// Whatever the datagrams and however the stream is cut into reads, the same
        /// datagrams come out in order, and nothing is held beyond an unfinished frame.
        #[test]
        fn datagrams_survive_any_split(
            datagrams in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
            cuts in prop::collection::vec(1usize..64, 1..50),
        ) {
            let mut stream = Vec::new();
            for d in &datagrams {
                encode(d, &mut stream).expect("short datagrams fit");
            }
            let mut deframer = Deframer::default();
            let mut out = Vec::new();
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at >= stream.len() {
                    break;
                }
                let end = (at + cut).min(stream.len());
                deframer.push(&stream[at..end]);
                at = end;
                while let Some(d) = deframer.next_datagram() {
                    out.push(d.to_vec());
                }
            }
            prop_assert_eq!(out, datagrams);
            prop_assert_eq!(deframer.pending(), 0);
        }

        /// Random bytes never panic and never yield more than they could hold.
        #[test]
        fn junk_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
            let mut deframer = Deframer::default();
            deframer.push(&bytes);
            let mut total = 0;
            while let Some(d) = deframer.next_datagram() {
                total += d.len() + 2;
            }
            prop_assert!(total + deframer.pending() == bytes.len());
        }
    }
}
