//! Encrypted datagrams gathered into one `sendmsg` with UDP GSO: the kernel cuts the buffer
//! into datagrams of `segment` bytes, so a burst from the TUN costs one syscall and one trip
//! through the stack instead of one per packet. One send carries datagrams to one
//! destination, all `segment` bytes long but the last, which may be shorter.

use std::net::SocketAddr;

/// The UDP length field bounds one GSO send (65,535 minus UDP and IP headers); stay below.
pub const MAX_GSO_BYTES: usize = 65_000;

/// One ready send: `contents` cut into datagrams of `segment` bytes.
pub struct Send<'a, D = SocketAddr> {
    pub destination: D,
    pub contents: &'a [u8],
    /// `None` for a single datagram.
    pub segment: Option<usize>,
}

/// Callers write each datagram straight into [`GsoBatch::slot`] (no copy), then
/// [`GsoBatch::commit`] it; whatever has to go first is handed to `send`.
pub struct GsoBatch<D = SocketAddr> {
    buf: Vec<u8>,
    destination: Option<D>,
    segment: usize,
    count: usize,
    filled: usize,
}

impl<D: Copy + PartialEq> GsoBatch<D> {
    pub fn new() -> Self {
        GsoBatch {
            buf: Vec::new(),
            destination: None,
            segment: 0,
            count: 0,
            filled: 0,
        }
    }

    /// Room for the next datagram, `max` bytes, after those already gathered.
    pub fn slot(&mut self, max: usize) -> &mut [u8] {
        let end = self.filled + max;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        &mut self.buf[self.filled..end]
    }

    /// Takes the `len` bytes just written into the slot as a datagram for `destination`.
    /// `max_segments` is what the socket takes in one send (1 without GSO).
    pub fn commit(
        &mut self,
        destination: D,
        len: usize,
        max_segments: usize,
        send: &mut impl FnMut(Send<'_, D>),
    ) {
        let start = self.filled;
        if self.count > 0 {
            let joins = self.destination == Some(destination)
                && len <= self.segment
                && self.count < max_segments
                && start + len <= MAX_GSO_BYTES;
            if joins {
                self.filled += len;
                self.count += 1;
                // Only the last datagram may be shorter: a short one closes the send.
                if len < self.segment || self.count == max_segments {
                    self.flush(send);
                }
                return;
            }
            self.flush(send);
            self.buf.copy_within(start..start + len, 0);
        }
        self.destination = Some(destination);
        self.segment = len;
        self.count = 1;
        self.filled = len;
        if max_segments <= 1 {
            self.flush(send);
        }
    }

    /// Sends what is gathered.
    pub fn flush(&mut self, send: &mut impl FnMut(Send<'_, D>)) {
        if self.count == 0 {
            return;
        }
        if let Some(destination) = self.destination {
            send(Send {
                destination,
                contents: &self.buf[..self.filled],
                segment: (self.count > 1).then_some(self.segment),
            });
        }
        self.count = 0;
        self.filled = 0;
    }
}

impl<D: Copy + PartialEq> Default for GsoBatch<D> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "192.0.2.1:51820";
    const B: &str = "198.51.100.7:4000";

    /// Feeds datagrams (destination, length, fill byte) and returns the sends as
    /// (destination, total length, segment, first bytes of each datagram).
    fn run(
        datagrams: &[(&str, usize, u8)],
        max_segments: usize,
    ) -> Vec<(String, usize, Option<usize>, Vec<u8>)> {
        let mut batch = GsoBatch::new();
        let mut sent = Vec::new();
        let mut record = |s: Send<'_>| {
            let step = s.segment.unwrap_or(s.contents.len());
            let firsts = s.contents.chunks(step).map(|c| c[0]).collect();
            sent.push((
                s.destination.to_string(),
                s.contents.len(),
                s.segment,
                firsts,
            ));
        };
        for &(to, len, fill) in datagrams {
            batch.slot(len + 32)[..len].fill(fill);
            batch.commit(to.parse().expect("addr"), len, max_segments, &mut record);
        }
        batch.flush(&mut record);
        sent
    }

    #[test]
    fn batches_follow_the_gso_rules() {
        struct Case {
            name: &'static str,
            datagrams: Vec<(&'static str, usize, u8)>,
            max_segments: usize,
            want: Vec<(&'static str, usize, Option<usize>, Vec<u8>)>,
        }
        let cases = [
            Case {
                name: "equal sizes to one destination: one send",
                datagrams: vec![(A, 1452, 1), (A, 1452, 2), (A, 1452, 3)],
                max_segments: 64,
                want: vec![(A, 4356, Some(1452), vec![1, 2, 3])],
            },
            Case {
                name: "a shorter datagram ends the send it joins",
                datagrams: vec![(A, 1452, 1), (A, 100, 2), (A, 1452, 3)],
                max_segments: 64,
                want: vec![(A, 1552, Some(1452), vec![1, 2]), (A, 1452, None, vec![3])],
            },
            Case {
                name: "a longer datagram starts a new send",
                datagrams: vec![(A, 148, 1), (A, 1452, 2), (A, 1452, 3)],
                max_segments: 64,
                want: vec![(A, 148, None, vec![1]), (A, 2904, Some(1452), vec![2, 3])],
            },
            Case {
                name: "another destination starts a new send",
                datagrams: vec![(A, 1452, 1), (B, 1452, 2), (A, 1452, 3)],
                max_segments: 64,
                want: vec![
                    (A, 1452, None, vec![1]),
                    (B, 1452, None, vec![2]),
                    (A, 1452, None, vec![3]),
                ],
            },
            Case {
                name: "no more segments than the socket takes",
                datagrams: vec![(A, 1000, 1), (A, 1000, 2), (A, 1000, 3)],
                max_segments: 2,
                want: vec![(A, 2000, Some(1000), vec![1, 2]), (A, 1000, None, vec![3])],
            },
            Case {
                name: "without GSO every datagram is its own send",
                datagrams: vec![(A, 1000, 1), (A, 1000, 2)],
                max_segments: 1,
                want: vec![(A, 1000, None, vec![1]), (A, 1000, None, vec![2])],
            },
        ];
        for case in cases {
            let want: Vec<_> = case
                .want
                .into_iter()
                .map(|(d, len, seg, firsts)| (d.to_string(), len, seg, firsts))
                .collect();
            assert_eq!(
                run(&case.datagrams, case.max_segments),
                want,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn one_send_stays_within_the_udp_length_limit() {
        let datagrams: Vec<_> = (0..60).map(|i| (A, 1452, i as u8)).collect();
        let sent = run(&datagrams, 64);
        assert!(sent.iter().all(|(_, len, _, _)| *len <= MAX_GSO_BYTES));
        let firsts: Vec<u8> = sent.iter().flat_map(|s| s.3.clone()).collect();
        assert_eq!(
            firsts,
            (0..60).collect::<Vec<u8>>(),
            "order and content kept"
        );
        assert_eq!(sent[0].1, 44 * 1452);
    }
}
