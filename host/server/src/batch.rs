//! Many datagrams to many destinations in few system calls: the pacer's
//! packets of one millisecond go out together.
//!
//! Two kernel facilities, both Linux:
//! - `sendmmsg`: many messages, each to its own destination, in one call.
//! - UDP generic segmentation offload (`UDP_SEGMENT`): datagrams of one
//!   size to one destination travel the stack as a single buffer and are
//!   cut into separate datagrams at the device (or by the receiving host on
//!   loopback). The wire sees ordinary datagrams. The stack is walked once
//!   per run instead of once per packet, which is where the time goes:
//!   about 3 µs per packet on loopback here, against well under 1 µs.
//!   Runs happen whenever parked calls send to one address and port, such
//!   as a media gateway or SBC that takes many calls on one port and tells
//!   them apart by SSRC.
//!
//! Written here because the standard library has neither call, socket2 stops
//! at addresses, nix would be a large dependency for one call, and
//! quinn-udp (which does GSO) sends one destination per system call.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::SockAddr;

/// Most messages per system call (the kernel's UIO_MAXIOV).
const CHUNK: usize = 1024;

/// Most datagrams in one segmented send. Kernels before 6.9 refuse more
/// than 64 (UDP_MAX_SEGMENTS).
const MAX_SEGMENTS: usize = 64;

/// Datagrams longer than this are never coalesced: a segment must fit the
/// path MTU, which we do not know. RTP for 20 ms of G.711 is 172 bytes.
const MAX_SEGMENT_LEN: usize = 1200;

struct Queued {
    offset: usize,
    len: usize,
    dest: SocketAddr,
}

/// Datagrams waiting to be sent.
pub struct BatchSender {
    data: Vec<u8>,
    messages: Vec<Queued>,
    /// Coalesce runs to one destination with `UDP_SEGMENT`. Turned off for
    /// good the first time the kernel refuses it (an old kernel, or a
    /// device without checksum offload answers EIO).
    segmentation: bool,
    coalesced: u64,
}

impl Default for BatchSender {
    fn default() -> BatchSender {
        BatchSender::new()
    }
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub sent: usize,
    /// Datagrams the kernel refused (a full socket buffer on a
    /// non-blocking socket): UDP may drop, and so do we.
    pub dropped: usize,
}

/// A run of queued datagrams (indices into the sorted order) that goes
/// out as one message: one datagram, or several of one length to one
/// destination.
struct Unit {
    first: usize,
    count: usize,
}

impl BatchSender {
    pub fn new() -> BatchSender {
        BatchSender {
            data: Vec::new(),
            messages: Vec::new(),
            segmentation: true,
            coalesced: 0,
        }
    }

    /// A sender that never coalesces: one datagram per message.
    pub fn without_segmentation() -> BatchSender {
        BatchSender {
            segmentation: false,
            ..BatchSender::new()
        }
    }

    /// Whether runs to one destination are still sent segmented.
    pub fn segmentation(&self) -> bool {
        self.segmentation
    }

    /// Datagrams sent so far as part of a segmented run.
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn push(&mut self, dest: SocketAddr, packet: &[u8]) {
        let offset = self.data.len();
        self.data.extend_from_slice(packet);
        self.messages.push(Queued {
            offset,
            len: packet.len(),
            dest,
        });
    }

    /// Sends everything queued through `socket`. Datagrams to one
    /// destination keep the order they were pushed in.
    pub fn flush(&mut self, socket: &impl AsRawFd) -> Flushed {
        let fd = socket.as_raw_fd();
        let mut order: Vec<usize> = (0..self.messages.len()).collect();
        if self.segmentation {
            // Stable: equal destinations keep their push order.
            order.sort_by_key(|&i| self.messages[i].dest);
        }
        let mut result = Flushed::default();
        let mut from = 0;
        while from < order.len() {
            let attempt = self.send(fd, &order[from..], self.segmentation);
            result.sent += attempt.sent;
            result.dropped += attempt.dropped;
            match attempt.segmentation_refused_at {
                Some(at) => {
                    tracing::info!(
                        error = %attempt.error.map(|e| e.to_string()).unwrap_or_default(),
                        "the kernel refused UDP segmentation offload; sending one datagram per message from now on"
                    );
                    self.segmentation = false;
                    from += at;
                }
                None => break,
            }
        }
        self.data.clear();
        self.messages.clear();
        result
    }

    fn units(&self, order: &[usize], segmentation: bool) -> Vec<Unit> {
        let mut units = Vec::new();
        let mut i = 0;
        while i < order.len() {
            let head = &self.messages[order[i]];
            let mut count = 1;
            if segmentation && head.len <= MAX_SEGMENT_LEN {
                while count < MAX_SEGMENTS
                    && i + count < order.len()
                    && self.messages[order[i + count]].dest == head.dest
                    && self.messages[order[i + count]].len == head.len
                {
                    count += 1;
                }
            }
            units.push(Unit { first: i, count });
            i += count;
        }
        units
    }

    /// One pass of `sendmmsg` calls over `order`. Stops early only when the
    /// kernel refuses a segmented run, so that the caller can send the rest
    /// one datagram per message.
    fn send(&mut self, fd: std::os::fd::RawFd, order: &[usize], segmentation: bool) -> Attempt {
        let units = self.units(order, segmentation);
        let mut iovecs: Vec<libc::iovec> = order
            .iter()
            .map(|&i| {
                let m = &self.messages[i];
                libc::iovec {
                    iov_base: self.data[m.offset..].as_ptr() as *mut libc::c_void,
                    iov_len: m.len,
                }
            })
            .collect();
        let addrs: Vec<SockAddr> = units
            .iter()
            .map(|u| SockAddr::from(self.messages[order[u.first]].dest))
            .collect();
        // One control buffer per unit, 8-byte aligned as a cmsghdr must be;
        // 32 bytes hold CMSG_SPACE(2) = 24.
        let mut controls: Vec<[u64; 4]> = vec![[0; 4]; units.len()];
        let iov_base = iovecs.as_mut_ptr();
        let mut headers: Vec<libc::mmsghdr> = Vec::with_capacity(units.len());
        for (k, u) in units.iter().enumerate() {
            // SAFETY: an all-zero msghdr is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = addrs[k].as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = addrs[k].len();
            // SAFETY: `u.first + u.count <= iovecs.len()` by construction.
            h.msg_hdr.msg_iov = unsafe { iov_base.add(u.first) };
            h.msg_hdr.msg_iovlen = u.count as _;
            if u.count > 1 {
                let segment = self.messages[order[u.first]].len as u16;
                h.msg_hdr.msg_control = controls[k].as_mut_ptr() as *mut libc::c_void;
                // SAFETY: the control buffer is 32 aligned bytes, more than
                // CMSG_SPACE(2); CMSG_FIRSTHDR of a buffer that large is
                // non-null and points into it.
                unsafe {
                    h.msg_hdr.msg_controllen = libc::CMSG_SPACE(2) as _;
                    let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, segment);
                }
            }
            headers.push(h);
        }
        let mut attempt = Attempt::default();
        let mut done = 0;
        while done < headers.len() {
            let batch = (headers.len() - done).min(CHUNK);
            // SAFETY: every header points at iovecs, an address and a
            // control buffer that live until this function returns, and the
            // iovecs point into `self.data`, which is not touched meanwhile.
            let n = unsafe {
                libc::sendmmsg(fd, headers[done..].as_mut_ptr(), batch as libc::c_uint, 0)
            };
            if n > 0 {
                for u in &units[done..done + n as usize] {
                    attempt.sent += u.count;
                    if u.count > 1 {
                        self.coalesced += u.count as u64;
                    }
                }
                done += n as usize;
                continue;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            let unit = &units[done];
            if unit.count > 1
                && matches!(
                    err.raw_os_error(),
                    Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
                )
            {
                attempt.segmentation_refused_at = Some(unit.first);
                attempt.error = Some(err);
                return attempt;
            }
            // Full buffer or a bad destination: drop this message and go on
            // with the rest.
            attempt.dropped += unit.count;
            done += 1;
        }
        attempt
    }
}

#[derive(Default)]
struct Attempt {
    sent: usize,
    dropped: usize,
    /// Index into the order passed to `send` of the first datagram not sent
    /// because the kernel refused segmentation.
    segmentation_refused_at: Option<usize>,
    error: Option<std::io::Error>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn receiver() -> UdpSocket {
        let r = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&r)
            .set_recv_buffer_size(4 << 20)
            .unwrap();
        r.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        r
    }

    /// Every datagram arrives on its own, from the sender, in push order per
    /// destination: whether or not runs went out segmented.
    fn many_destinations_in_one_flush(mut batch: BatchSender) -> BatchSender {
        let receivers: Vec<UdpSocket> = (0..3).map(|_| receiver()).collect();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..30u8 {
            let r = &receivers[usize::from(i) % 3];
            batch.push(r.local_addr().unwrap(), &[i; 20]);
        }
        assert_eq!(batch.len(), 30);
        assert_eq!(
            batch.flush(&sender),
            Flushed {
                sent: 30,
                dropped: 0
            }
        );
        assert!(batch.is_empty());
        for (k, r) in receivers.iter().enumerate() {
            let mut buf = [0u8; 64];
            for j in 0..10 {
                let (n, from) = r.recv_from(&mut buf).unwrap();
                assert_eq!((n, from), (20, sender.local_addr().unwrap()));
                assert_eq!(buf[0] as usize, k + 3 * j);
            }
        }
        batch
    }

    #[test]
    fn runs_to_one_destination_go_out_segmented_and_arrive_as_datagrams() {
        let batch = many_destinations_in_one_flush(BatchSender::new());
        assert!(batch.segmentation(), "this kernel refused UDP_SEGMENT");
        assert_eq!(batch.coalesced(), 30);
    }

    #[test]
    fn without_segmentation_every_datagram_is_its_own_message() {
        let batch = many_destinations_in_one_flush(BatchSender::without_segmentation());
        assert_eq!(batch.coalesced(), 0);
    }

    /// Runs longer than the kernel's segment limit, lengths that change in
    /// the middle of a run, and packets too long to coalesce.
    #[test]
    fn long_runs_and_mixed_lengths_keep_every_datagram_whole_and_in_order() {
        let (a, b) = (receiver(), receiver());
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = BatchSender::new();
        let mut expected_a = Vec::new();
        let mut expected_b = Vec::new();
        for i in 0..200u32 {
            let len = match i {
                70..=74 => 100,
                150 | 151 => 1400,
                _ => 172,
            };
            let mut packet = vec![0u8; len];
            packet[..4].copy_from_slice(&i.to_be_bytes());
            if i % 4 == 3 {
                batch.push(b.local_addr().unwrap(), &packet);
                expected_b.push(packet);
            } else {
                batch.push(a.local_addr().unwrap(), &packet);
                expected_a.push(packet);
            }
        }
        assert_eq!(batch.flush(&sender).sent, 200);
        assert!(batch.coalesced() > 150, "coalesced {}", batch.coalesced());
        for (r, expected) in [(&a, expected_a), (&b, expected_b)] {
            let mut buf = [0u8; 2048];
            for packet in expected {
                let n = r.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], &packet[..]);
            }
        }
    }

    /// A kernel that refuses segmentation: the kernel answers EINVAL to a
    /// segmented send on a socket with UDP checksums off (SO_NO_CHECK), as
    /// it answers EIO for a NIC without checksum offload. Every datagram
    /// still arrives, and the sender stops trying.
    #[test]
    fn a_refused_segmented_send_falls_back_to_one_datagram_per_message() {
        use std::os::fd::AsRawFd;
        let r = receiver();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Linux's SO_NO_CHECK (the libc crate names it only on some
        // architectures).
        const SO_NO_CHECK: libc::c_int = 11;
        let on: libc::c_int = 1;
        // SAFETY: a plain integer socket option on a socket we own.
        let rc = unsafe {
            libc::setsockopt(
                sender.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_NO_CHECK,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let mut batch = BatchSender::new();
        for round in 0..2u8 {
            for i in 0..10u8 {
                batch.push(r.local_addr().unwrap(), &[round * 10 + i; 50]);
            }
            assert_eq!(
                batch.flush(&sender),
                Flushed {
                    sent: 10,
                    dropped: 0
                }
            );
            assert!(!batch.segmentation());
        }
        assert_eq!(batch.coalesced(), 0);
        let mut buf = [0u8; 64];
        for i in 0..20u8 {
            let n = r.recv(&mut buf).unwrap();
            assert_eq!((n, buf[0]), (50, i));
        }
    }
}
